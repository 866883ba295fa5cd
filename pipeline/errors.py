"""Exceptions raised by hessweep: one class per kind of bad input or numerical trouble."""

from __future__ import annotations

__all__ = ["HessweepError", "ScenarioError", "StoreError", "SweepError"]


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


class SweepError(HessweepError, ValueError):
    """A sweep definition (the YAML file) is invalid.

    Parameters
    ----------
    path : str
        YAML path of the offending field, e.g. ``"grid.c[1]"`` or ``"fixed.cov.weights"``;
        ``"<root>"`` for the document as a whole (bad encoding, YAML syntax, not a mapping).
    reason : str
        What is wrong with it, phrased to follow the path.
    source : str or None, default None
        Where the sweep came from (a file name), for the caller to show; not part of the message.
    """

    def __init__(self, path: str, reason: str, *, source: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.source = source
        super().__init__(f"{path}: {reason}")


class StoreError(HessweepError, ValueError):
    """A result store (the Zarr cube) is missing, unreadable, or belongs to another sweep.

    Parameters
    ----------
    path : str
        The store's path, as given.
    reason : str
        What is wrong with it, phrased to follow the path.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")
