"""hessweep: Hessian eigenspectra of generalised linear models, by random matrix theory and Monte Carlo."""

from pipeline import montecarlo, theory
from pipeline.errors import HessweepError, ScenarioError
from pipeline.scenario import Scenario

__all__ = ["HessweepError", "Scenario", "ScenarioError", "montecarlo", "theory"]
__version__ = "0.1.0"
