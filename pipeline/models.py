"""Response models, label transforms and losses of the generalised linear model.

A response model is the law of the label ``y`` given ``h* = w*ᵀx``; a loss is ``ℓ(y, h)`` at
``h = wᵀx`` and enters the Hessian only through its curvature ``g = ∂²ℓ/∂h²``.  A label transform
``T`` (the preprocessing of spectral initialisation) replaces ``y`` by ``T(y)`` before the loss sees
it.  Each kind lives in one registry keyed by the name used in scenarios and sweep files: adding a
model, a transform or a loss is one class or one entry below, nothing else.

See ``shared/theory/glm.md`` for the definitions.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import expit

from pipeline.errors import ScenarioError

__all__ = [
    "LABEL_TRANSFORMS",
    "LOSSES",
    "MODELS",
    "LabelTransform",
    "Loss",
    "ResponseModel",
    "get_loss",
    "make_label_transform",
    "make_model",
]

# Gauss–Hermite nodes for the noise of the linear model: y | h* is Gaussian, and every loss here
# is a polynomial or an exponential in y, so 24 nodes integrate it to machine precision.
_NOISE_NODES = 24


def _spec_name_and_params(spec: str | Mapping[str, Any], field: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name"`` or ``{"name": ..., **params}`` into the name and its parameters."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ScenarioError(f"{field}.name", "must be given as a string")
        return name, params
    raise ScenarioError(field, f"must be a name or a mapping with a name, not {type(spec).__name__}")


def _finite_float(value: Any, field: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScenarioError(field, f"must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ScenarioError(field, "must be finite")
    if minimum is not None and number < minimum:
        raise ScenarioError(field, f"must be >= {minimum:g}")
    return number


def _no_extra(params: Mapping[str, Any], allowed: set[str], field: str) -> None:
    for key in params:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ScenarioError(f"{field}.{key}", f"unknown parameter (known: {known})")


# ----------------------------------------------------------------------------------------------
# Response models
# ----------------------------------------------------------------------------------------------


class ResponseModel(ABC):
    """The law of the label ``y`` given ``h* = w*ᵀx``.

    Subclasses set ``name`` (the registry key) and ``binary_labels`` (``y ∈ {-1, +1}``), take their
    parameters as keyword arguments and validate them in ``__init__``.
    """

    name: ClassVar[str]
    binary_labels: ClassVar[bool]

    @abstractmethod
    def sample(self, h_star: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw one label per entry of ``h_star``."""

    @abstractmethod
    def label_nodes(self, h_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature of ``y | h*``.

        Returns
        -------
        y, weight : numpy.ndarray
            Arrays of shape ``h_star.shape + (m,)``; ``weight`` sums to 1 along the last axis, and
            ``sum(weight * φ(y))`` is ``E[φ(y) | h*]`` for the functions the losses use.
        """

    @abstractmethod
    def label_bounds(self, h_star_constant: bool) -> tuple[bool, bool]:
        """Whether ``y`` is bounded (below, above); ``h_star_constant``: ``h*`` is a.s. constant."""

    def params(self) -> dict[str, Any]:
        """The model's parameters, as given in a scenario (without the name)."""
        return {}


class LogisticModel(ResponseModel):
    """``y ∈ {-1, +1}`` with ``P(y = 1 | h*) = σ(h*)``."""

    name = "logistic"
    binary_labels = True

    def sample(self, h_star: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.where(rng.random(h_star.shape) < expit(h_star), 1.0, -1.0)

    def label_nodes(self, h_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h_star = np.asarray(h_star, dtype=float)
        y = np.broadcast_to(np.array([1.0, -1.0]), (*h_star.shape, 2))
        weight = np.stack([expit(h_star), expit(-h_star)], axis=-1)
        return y, weight

    def label_bounds(self, h_star_constant: bool) -> tuple[bool, bool]:
        return True, True


class PhaseModel(ResponseModel):
    """Noiseless phase retrieval: ``y = (h*)²``."""

    name = "phase"
    binary_labels = False

    def sample(self, h_star: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return h_star**2

    def label_nodes(self, h_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h_star = np.asarray(h_star, dtype=float)
        return (h_star**2)[..., None], np.ones((*h_star.shape, 1))

    def label_bounds(self, h_star_constant: bool) -> tuple[bool, bool]:
        return True, h_star_constant


class LinearModel(ResponseModel):
    """``y = h* + noise · ε`` with ``ε ~ N(0, 1)``.

    Parameters
    ----------
    noise : float, default 0.0
        Standard deviation of the additive Gaussian noise, ``>= 0``.
    """

    name = "linear"
    binary_labels = False

    def __init__(self, noise: float = 0.0) -> None:
        self.noise = _finite_float(noise, "model.noise", minimum=0.0)

    def sample(self, h_star: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return h_star + self.noise * rng.standard_normal(h_star.shape)

    def label_nodes(self, h_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h_star = np.asarray(h_star, dtype=float)
        if self.noise == 0.0:
            return h_star[..., None], np.ones((*h_star.shape, 1))
        nodes, weights = np.polynomial.hermite_e.hermegauss(_NOISE_NODES)
        y = h_star[..., None] + self.noise * nodes
        weight = np.broadcast_to(weights / weights.sum(), y.shape)
        return y, weight

    def label_bounds(self, h_star_constant: bool) -> tuple[bool, bool]:
        bounded = h_star_constant and self.noise == 0.0
        return bounded, bounded

    def params(self) -> dict[str, Any]:
        return {"noise": self.noise}


MODELS: dict[str, type[ResponseModel]] = {
    model.name: model for model in (LogisticModel, PhaseModel, LinearModel)
}


def make_model(spec: str | Mapping[str, Any]) -> ResponseModel:
    """Build a response model from ``"name"`` or ``{"name": ..., **params}``.

    Raises
    ------
    ScenarioError
        For an unknown name or bad parameters (field ``model`` or ``model.PARAM``).

    Examples
    --------
    >>> make_model({"name": "linear", "noise": 0.5}).noise
    0.5
    """
    name, params = _spec_name_and_params(spec, "model")
    if name not in MODELS:
        raise ScenarioError("model", f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    cls = MODELS[name]
    _no_extra(params, set(inspect.signature(cls).parameters), "model")
    return cls(**params)


# ----------------------------------------------------------------------------------------------
# Label transforms (spectral initialisation)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelTransform:
    """A preprocessing ``T`` of real-valued labels: the loss sees ``T(y)`` instead of ``y``.

    Attributes
    ----------
    name : str
        Registry key: ``raw``, ``trim`` or ``optimal``.
    threshold : float or None
        For ``trim``: labels are clipped to ``[-threshold, threshold]``.  Clipping rather than
        zeroing keeps ``T`` continuous, so the quadrature of the theory converges at its usual
        rate; both bound ``T`` and make the spectral-initialisation transition a true one.
    """

    name: str
    threshold: float | None = None

    @property
    def bounded(self) -> bool:
        """Whether ``T(y)`` is bounded whatever ``y`` is."""
        return self.name != "raw"

    def apply(self, y: np.ndarray, c: float) -> np.ndarray:
        """Return ``T(y)``; ``c = p/n`` enters the optimal transform."""
        if self.name == "raw":
            return y
        if self.name == "trim" and self.threshold is not None:
            return np.clip(y, -self.threshold, self.threshold)
        # Mondelli–Montanari / Luo–Alghamdi–Lu optimal preprocessing for real phase retrieval.
        y_plus = np.maximum(y, 0.0)
        return (y_plus - 1.0) / (y_plus + math.sqrt(2.0 / c) - 1.0)

    def params(self) -> dict[str, Any]:
        return {} if self.threshold is None else {"threshold": self.threshold}


LABEL_TRANSFORMS = ("raw", "trim", "optimal")


def make_label_transform(spec: str | Mapping[str, Any], c: float) -> LabelTransform:
    """Build a label transform from ``"raw"``, ``"optimal"`` or ``{"name": "trim", "threshold": τ}``.

    Raises
    ------
    ScenarioError
        For an unknown name, a missing or non-positive threshold, or the optimal transform at
        ``c >= 2`` (beyond the weak-recovery threshold its denominator vanishes).
    """
    name, params = _spec_name_and_params(spec, "labels")
    if name not in LABEL_TRANSFORMS:
        known = ", ".join(LABEL_TRANSFORMS)
        raise ScenarioError("labels", f"unknown label transform {name!r} (known: {known})")
    if name == "trim":
        _no_extra(params, {"threshold"}, "labels")
        if "threshold" not in params:
            raise ScenarioError("labels.threshold", "is required for the trim transform")
        threshold = _finite_float(params["threshold"], "labels.threshold")
        if threshold <= 0:
            raise ScenarioError("labels.threshold", "must be > 0")
        return LabelTransform("trim", threshold)
    _no_extra(params, set(), "labels")
    if name == "optimal" and c >= 2.0:
        raise ScenarioError("labels", "the optimal transform needs c < 2 (n/p above 1/2)")
    return LabelTransform(name)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


def _logistic_curvature(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    # σ(t)(1 − σ(t)) written as a/(1+a)² with a = e^{−|t|}: no overflow for any t.
    a = np.exp(-np.abs(y * h))
    return a / (1.0 + a) ** 2


def _exponential_curvature(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    return y**2 * np.exp(-y * h)


def _square_curvature(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.ones(np.broadcast_shapes(np.shape(y), np.shape(h)))


def _phase_curvature(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    return 3.0 * h**2 - y


def _spectral_curvature(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(y, dtype=float), np.broadcast_shapes(np.shape(y), np.shape(h))).copy()


@dataclass(frozen=True)
class Loss:
    """A loss ``ℓ(y, h)`` through its curvature.

    Attributes
    ----------
    name : str
        Registry key.
    binary_labels : bool
        The loss is defined for ``y ∈ {-1, +1}`` only.
    curvature : callable
        ``g(y, h) = ∂²ℓ/∂h²``, vectorised.
    bounds : callable
        ``bounds(h_constant, label_bounds) -> (below, above)``: whether ``g`` is bounded below
        and above, given whether ``h = wᵀx`` is a.s. constant and whether the (transformed)
        labels are bounded below and above.  Bounded ``g`` on a side bounds the spectral
        support on that side; isolated eigenvalues need ``g`` bounded on both.
    """

    name: str
    binary_labels: bool
    curvature: Callable[[np.ndarray, np.ndarray], np.ndarray]
    bounds: Callable[[bool, tuple[bool, bool]], tuple[bool, bool]]


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        # g = σ(yh)(1 − σ(yh)) ∈ (0, 1/4]
        Loss("logistic", True, _logistic_curvature, lambda h_const, y_bounds: (True, True)),
        # g = y² e^{−yh} > 0 with y = ±1: unbounded above unless h is constant
        Loss("exponential", True, _exponential_curvature, lambda h_const, y_bounds: (True, h_const)),
        Loss("square", False, _square_curvature, lambda h_const, y_bounds: (True, True)),
        # g = 3h² − y: bounded below iff y is bounded above; above iff h is constant and y bounded below
        Loss(
            "phase",
            False,
            _phase_curvature,
            lambda h_const, y_bounds: (y_bounds[1], h_const and y_bounds[0]),
        ),
        # ℓ = y h²/2, g = y: the Hessian is the spectral-initialisation matrix (1/n) Σ T(yᵢ) xᵢxᵢᵀ
        # (Mondelli–Montanari, Lu–Li), whose top eigenvector estimates w*; g is bounded where
        # the (transformed) labels are.
        Loss("spectral", False, _spectral_curvature, lambda h_const, y_bounds: y_bounds),
    )
}


def get_loss(name: Any) -> Loss:
    """Look a loss up by name.

    Raises
    ------
    ScenarioError
        For an unknown name (field ``loss``).
    """
    if not isinstance(name, str) or name not in LOSSES:
        raise ScenarioError("loss", f"unknown loss {name!r} (known: {', '.join(sorted(LOSSES))})")
    return LOSSES[name]
