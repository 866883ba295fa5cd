"""Random-matrix theory of the Hessian spectrum: ``solve(scenario)`` for the GLM family."""

from pipeline.theory.glm import TheoryResult, solve, spike_margin

__all__ = ["TheoryResult", "solve", "spike_margin"]
