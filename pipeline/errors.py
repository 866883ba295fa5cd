"""Exceptions raised by hessweep: one class per kind of bad input or numerical trouble."""

from __future__ import annotations

__all__ = ["HessweepError", "ScenarioError"]


class HessweepError(Exception):
    """Base class of every error that hessweep raises on purpose."""


class ScenarioError(HessweepError, ValueError):
    """A scenario (one grid point's physics) is invalid.

    Parameters
    ----------
    field : str
        Dotted path of the offending field, e.g. ``"cov.weights"`` or ``"mu.norm"``.
    reason : str
        What is wrong with it, phrased to follow the field name.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")
