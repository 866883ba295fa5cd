"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline import runner, store
from pipeline.families import family_of
from pipeline.sweep import SweepSpec, parse_sweep

_ATTEMPTS = 1


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fixed seed, so that every statistical test sees the same draws."""
    return np.random.default_rng(20210302)


def build_cube(spec: SweepSpec, path: Path) -> Path:
    """The cube of ``spec`` at ``path``, computed in this process, cell by cell.

    The same tasks as :func:`pipeline.runner.run_sweep` without a Dask cluster (seconds saved per
    test module): for tests of what reads cubes (analysis, plots, notebooks).  The runner's own
    tests check that a cluster produces the same cube.
    """
    store.create_store(path, spec)
    for cell in family_of(spec).layout(spec).cells():
        runner.cell_task(str(path), spec, cell, _ATTEMPTS)
    return path


@pytest.fixture(scope="session")
def cube_from_yaml(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``cube_from_yaml(text)``: the path of the cube of a sweep given as YAML text (cached per text)."""
    built: dict[str, Path] = {}

    def make(text: str) -> Path:
        if text not in built:
            spec = parse_sweep(text)
            built[text] = build_cube(spec, tmp_path_factory.mktemp("cube") / f"{spec.name}.zarr")
        return built[text]

    return make


# Matrix-free Monte Carlo (montecarlo.method: lanczos): a quadrature of 4 × 40 = 160 nodes a trial
# and the extreme Ritz values, no eigenvalues.  c = 2 has the atom at 0.
LANCZOS_SWEEP = """
name: lz
p: 1200
trials: 2
model: logistic
grid: {c: [0.5, 2.0], loss: [logistic, exponential], signal: [0.0, 2.0]}
fixed: {w_star: {norm: 1.0}, w: w_star, mu: {angle: 90}}
montecarlo: {method: lanczos, probes: 4, steps: 40, dtype: float32}
theory: {points: 200}
"""


@pytest.fixture(scope="session")
def lanczos_cube(cube_from_yaml: Callable[[str], Path]) -> Path:
    """The cube of :data:`LANCZOS_SWEEP` (built once per session, for the analysis and plot tests)."""
    return cube_from_yaml(LANCZOS_SWEEP)
