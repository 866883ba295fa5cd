"""The small-index law ``α ≈ α₀ (ε − ε_c)^p`` (Pennington & Bahri (20): ``p = 3/2``) fitted to runs.

The index of a run is exact (a count of eigenvalues out of ``2n²``); its energy scatters from run to
run.  So the fit regresses the energy on the index, ``ε = ε_c + c α^{1/p}`` with ``c = α₀^{-1/p}``,
over the runs with ``0 < α ≤ alpha_max``: at ``p = 3/2`` this is a straight line in ``α^{2/3}`` whose
intercept is ``ε_c`` (ordinary least squares, with its standard error).  With the exponent free, the
residual of that line is minimised over ``q = 1/p`` (a one-dimensional profile: for each ``q`` the
line is solved exactly).  Runs with ``α = 0`` (minimisers) are left out: they sit anywhere below
``ε_c``, not at it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from pipeline.errors import ScenarioError

__all__ = ["IndexFit", "fit_index_law"]

# The profile over q = 1/p is searched on p ∈ [1/3, 10]: wider than any exponent the data at
# n = 16 can distinguish, narrow enough that the bounded search cannot run off to a degenerate line.
_Q_BOUNDS = (0.1, 3.0)
# minimize_scalar's absolute tolerance on q: 1e-6 is far below the exponent's statistical error.
_Q_TOLERANCE = 1e-6


@dataclass(frozen=True)
class IndexFit:
    """A fit of ``α = α₀ (ε − ε_c)^p`` to runs with ``0 < α ≤ alpha_max``.

    Attributes
    ----------
    critical_energy : float
        ``ε_c``: the energy where the fitted index reaches 0.
    critical_energy_stderr : float
        Its standard error from the linear regression at the fitted (or fixed) exponent
        (NaN with fewer than three points).
    alpha0 : float
        ``α₀``.
    exponent : float
        ``p`` (3/2 when fixed).
    points : int
        Runs used.
    rms : float
        Root-mean-square residual in energy.
    alpha_max : float
        The cut on the index.
    """

    critical_energy: float
    critical_energy_stderr: float
    alpha0: float
    exponent: float
    points: int
    rms: float
    alpha_max: float


def _line(energy: np.ndarray, feature: np.ndarray) -> tuple[float, float, float, float]:
    """Least squares ``energy ≈ a + b·feature``: ``(a, b, rms, stderr of a)``."""
    design = np.column_stack([np.ones_like(feature), feature])
    (a, b), *_ = np.linalg.lstsq(design, energy, rcond=None)
    residual = energy - (a + b * feature)
    rms = float(math.sqrt(np.mean(residual**2)))
    dof = energy.size - 2
    if dof < 1:
        return float(a), float(b), rms, math.nan
    sigma2 = float(residual @ residual) / dof
    covariance = sigma2 * np.linalg.inv(design.T @ design)
    return float(a), float(b), rms, float(math.sqrt(covariance[0, 0]))


def fit_index_law(
    energy: np.ndarray, index: np.ndarray, *, alpha_max: float = 0.1, exponent: float | None = 1.5
) -> IndexFit:
    """Fit ``α = α₀ (ε − ε_c)^p`` at small index, ``ε_c`` free (and ``p`` free with ``exponent=None``).

    Parameters
    ----------
    energy, index : array_like
        Energies ``ε`` and indices ``α`` of the runs (same length; converged runs only, as the
        caller chooses).
    alpha_max : float, default 0.1
        Runs with ``0 < α ≤ alpha_max`` are fitted.
    exponent : float or None, default 1.5
        ``p`` fixed at this value, or ``None`` to fit it.

    Returns
    -------
    IndexFit

    Raises
    ------
    ScenarioError
        Mismatched or non-finite inputs; fewer than 2 (3 with a free exponent) distinct indices in
        range; a fitted slope that is not positive (the index does not grow with the energy).

    Examples
    --------
    >>> import numpy as np
    >>> alpha = np.array([0.01, 0.02, 0.04, 0.08])
    >>> fit = fit_index_law(0.3 + (alpha / 2.0) ** (2 / 3), alpha)
    >>> round(fit.critical_energy, 12), round(fit.alpha0, 12), fit.points
    (0.3, 2.0, 4)
    """
    energy = np.asarray(energy, dtype=float)
    index = np.asarray(index, dtype=float)
    if energy.ndim != 1 or energy.shape != index.shape:
        raise ScenarioError(
            "energy", f"and index must be 1-d of equal length, not {energy.shape}, {index.shape}"
        )
    if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(index))):
        raise ScenarioError("energy", "and index must be finite")
    if not (math.isfinite(alpha_max) and 0.0 < alpha_max <= 1.0):
        raise ScenarioError("alpha_max", f"must be in (0, 1], not {alpha_max!r}")
    if exponent is not None and not (math.isfinite(exponent) and exponent > 0.0):
        raise ScenarioError("exponent", f"must be a finite number > 0 or None, not {exponent!r}")
    chosen = (index > 0.0) & (index <= alpha_max)
    eps, alpha = energy[chosen], index[chosen]
    needed = 2 if exponent is not None else 3
    if np.unique(alpha).size < needed:
        reason = f"has {np.unique(alpha).size} distinct values in (0, {alpha_max}]: the fit needs {needed}"
        raise ScenarioError("index", reason)
    if exponent is None:
        search = minimize_scalar(
            lambda q: _line(eps, alpha**q)[2],
            bounds=_Q_BOUNDS,
            method="bounded",
            options={"xatol": _Q_TOLERANCE},
        )
        q = float(search.x)
    else:
        q = 1.0 / exponent
    intercept, slope, rms, stderr = _line(eps, alpha**q)
    if not slope > 0.0:
        raise ScenarioError("index", f"does not grow with the energy in (0, {alpha_max}]: slope {slope:.3g}")
    p = 1.0 / q
    return IndexFit(
        critical_energy=intercept,
        critical_energy_stderr=stderr,
        alpha0=slope ** (-p),
        exponent=p,
        points=int(eps.size),
        rms=rms,
        alpha_max=alpha_max,
    )
