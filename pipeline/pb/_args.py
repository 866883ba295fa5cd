"""Argument checks shared by the theory and the Monte Carlo of the Pennington–Bahri model."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.errors import ScenarioError

MODELS = ("wigner", "product")

SeedLike = int | Sequence[int] | np.random.SeedSequence


def real(value: Any, name: str, *, positive: bool) -> float:
    """``value`` as a finite float, ``> 0`` if ``positive`` else ``>= 0``; a ScenarioError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ScenarioError(name, f"must be a real number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ScenarioError(name, f"must be finite, not {number!r}")
    if positive and number <= 0.0:
        raise ScenarioError(name, f"must be > 0, not {number!r}")
    if not positive and number < 0.0:
        raise ScenarioError(name, f"must be >= 0, not {number!r}")
    return number


def integer(value: Any, name: str, *, minimum: int) -> int:
    """``value`` as an int ``>= minimum``; a ScenarioError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ScenarioError(name, f"must be an integer, not {type(value).__name__}")
    if int(value) < minimum:
        raise ScenarioError(name, f"must be >= {minimum}, not {int(value)}")
    return int(value)


def model_name(value: Any) -> str:
    """``value`` if it names a model of :data:`MODELS`; a ScenarioError otherwise."""
    if not isinstance(value, str) or value not in MODELS:
        raise ScenarioError("model", f"unknown model {value!r} (known: {', '.join(MODELS)})")
    return value


def seed_sequence(seed: Any) -> np.random.SeedSequence:
    """The SeedSequence of an int, a sequence of ints or a SeedSequence; a ScenarioError otherwise."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    # SeedSequence(None) would draw fresh OS entropy: a silently irreproducible sample.
    if seed is None or isinstance(seed, bool):
        raise ScenarioError("seed", f"must be an int or a sequence of ints, not {seed!r}")
    try:
        return np.random.SeedSequence(seed)
    except (TypeError, ValueError) as error:
        raise ScenarioError("seed", f"bad seed {seed!r}: {error}") from error
