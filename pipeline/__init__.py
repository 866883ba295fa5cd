"""hessweep: Hessian eigenspectra of generalised linear models, by random matrix theory and Monte Carlo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline import montecarlo, theory
from pipeline.errors import HessweepError, ScenarioError
from pipeline.scenario import Scenario

if TYPE_CHECKING:
    from pipeline.store import open_cube

__all__ = ["HessweepError", "Scenario", "ScenarioError", "montecarlo", "open_cube", "theory"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `open_cube` is imported on first use: the store needs xarray, zarr and dask (about a second
    # of imports), which `import pipeline` alone (the theory, Monte Carlo, `hessweep validate`) does not.
    if name == "open_cube":
        from pipeline.store import open_cube

        return open_cube
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
