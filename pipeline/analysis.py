"""What a cube says: phase-transition boundaries, spike alignment, and theory-vs-Monte-Carlo fits.

Everything here reads a cube opened with :func:`pipeline.open_cube` (an :class:`xarray.Dataset`)
and returns labelled xarray objects; only points whose ``done`` flag is set are used.

* :func:`phase_boundary` — the critical signal at which an isolated eigenvalue leaves the bulk,
  per ``c``: from the theory by root-finding between grid values (on the sign of ``det G`` at the
  edge, :func:`pipeline.theory.spike_margin`, so far finer than the grid), or estimated from the
  Monte Carlo trials with an uncertainty.
* :func:`alignment_curve` — the squared cosine of the extreme eigenvector with a target along the
  signal: Monte Carlo mean and spread against the theory.
* :func:`fit_statistics` — per point, the Kolmogorov and Wasserstein-1 distances between the Monte
  Carlo spectrum and the limiting law, and the best-fitting shifted and scaled
  Marchenko–Pastur law with its distances (is the spectrum "MP-like"?, the paper's fig. 3).

Cubes of both Monte Carlo methods (``montecarlo.method``, the cube's ``montecarlo_method``
attribute, :func:`mc_method`) are read through two accessors, and nothing else here reads the Monte
Carlo spectra: :func:`extreme_eigenvalue`, the extreme eigenvalue of every point (from
``eigenvalues`` in a dense cube, from the extreme Ritz values ``mc_extreme`` in a lanczos cube),
and :func:`mc_distribution`, the spectral measure of one point (the pooled eigenvalues, or the
pooled Lanczos quadrature ``mc_nodes``/``mc_weights``, the trials' weights averaged).  A lanczos
cube gives the same boundaries, gaps and alignments (its extreme Ritz values converge
geometrically to isolated eigenvalues and closely to the edges); its fit statistics are the
quadrature's, whose distribution function resolves the spectrum to about ``1/steps`` plus the
probes' sampling error ``O(1/√(probes·p))`` — a Kolmogorov distance of a few 0.01 at 40 steps
where a dense cube of the same ``p`` reaches a few 0.001.

Sides are ``"right"`` (the top of the spectrum) and ``"left"`` (the bottom).  On the left, with
``p > n`` (``c > 1``) and a semi-definite Hessian, the smallest eigenvalues are the ``p − n`` zeros
of the null space: the gap is measured from the smallest eigenvalue beyond the atom at 0, but the
stored bottom eigenvectors are null vectors, so a left Monte Carlo alignment means nothing there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.optimize import brentq, minimize

from pipeline.lanczos import ZERO_TOLERANCE as LANCZOS_ZERO_TOLERANCE
from pipeline.scenario import TARGETS
from pipeline.sweep import SweepSpec
from pipeline.theory import solve, spike_margin
from pipeline.theory.bulk import cumulative_mass

__all__ = [
    "SIDES",
    "MarchenkoPasturFit",
    "SpectralMeasure",
    "alignment_curve",
    "cube_spec",
    "extreme_alignment",
    "extreme_eigenvalue",
    "extreme_gap",
    "fit_statistics",
    "grid_value",
    "marchenko_pastur_cdf",
    "marchenko_pastur_density",
    "marchenko_pastur_fit",
    "mc_distribution",
    "mc_method",
    "phase_boundary",
    "signal_vector",
]

#: The sides of the spectrum, as the analysis names them.
SIDES = ("left", "right")
# Matching a value typed by hand to a grid value (see grid_value).
_MATCH_RTOL = 1e-9
_MATCH_ATOL = 1e-12
# The variables that hold a point's Monte Carlo spectrum, by method (the cube's montecarlo_method).
_MC_SPECTRA = {"dense": ("eigenvalues",), "lanczos": ("mc_nodes", "mc_weights")}
# Which stored extreme eigenvectors belong to a side (`side` coordinate of `mc_align`).
_MC_SIDE = {"left": "bottom", "right": "top"}
# A theory spike counts as present when its eigenvector carries more than this of the target:
# its alignment grows linearly from 0 at the transition, so any computed spike beyond the edge
# passes, while a spike of another direction (alignment 0 up to rounding) does not.
_ALIGN_PRESENT = 1e-8
# Root-finding tolerance on the signal, relative to the bracket (the grid spacing).
_BOUNDARY_XTOL = 1e-10
# Bisection on the presence of a spike (where det G at the edge is unavailable) stops at this
# fraction of the bracket: solve() sees a spike from ~4e-5 of a bracket past its birth.
_PRESENCE_XTOL = 1e-4
# Points tried inside a bracket whose ends do not differ in sign (two spikes born in one step).
_BRACKET_SPLITS = 16
# The 99.9% quantile of a χ²₁ variable: the cos² of a random unit vector with a fixed one, times p,
# stays below it but once in a thousand draws.  An extreme eigenvector more aligned than
# _RANDOM_ALIGN / p carries the target (the Monte Carlo sign of a spike).
_RANDOM_ALIGN = 10.83
# θ-grid of the Marchenko–Pastur distribution function (x = 1 + c − 2√c cos θ makes the density
# smooth in θ, so a trapezoid rule on this many points is exact to ~1e-8).
_MP_POINTS = 4097
# The Kolmogorov-distance fit of a shifted, scaled MP law: parameters to 1e-5 of the scale and
# the distance to 1e-5 (sampling fluctuations of the distance itself are ~1e-3 and larger).
_MP_FIT_XTOL = 1e-5
_MP_FIT_FTOL = 1e-5
_MP_FIT_EVALUATIONS = 400


# ----------------------------------------------------------------------------------------------
# The cube's sweep and Monte Carlo extremes
# ----------------------------------------------------------------------------------------------


def cube_spec(ds: xr.Dataset) -> SweepSpec:
    """The sweep that made a cube (from its ``spec`` attribute)."""
    return SweepSpec.from_dict(json.loads(ds.attrs["spec"]))


def signal_vector(ds: xr.Dataset) -> str:
    """The vector the sweep's signal axis acts on: ``"mu"``, ``"w_star"`` or ``"w"``.

    A signal that is not a vector's norm or angle (a covariance eigenvalue) gives ``"mu"``.
    """
    head = json.loads(ds.attrs["spec"])["signal"].split(".")[0]
    return head if head in TARGETS else "mu"


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side: must be 'left' or 'right', not {side!r}")


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"target: must be one of {', '.join(TARGETS)}, not {target!r}")


def _extreme_k(ds: xr.Dataset, side: str) -> int:
    """Position along ``k`` of the most extreme stored eigenvector on ``side``."""
    matches = np.flatnonzero((ds["side"].values == _MC_SIDE[side]) & (ds["rank"].values == 0))
    if matches.size == 0:
        raise ValueError("the cube stores no extreme eigenvectors (montecarlo.k = 0)")
    return int(matches[0])


def extreme_alignment(ds: xr.Dataset, target: str, side: str) -> xr.DataArray:
    """Squared cosine of the most extreme Monte Carlo eigenvector on ``side`` with ``target``.

    Returns
    -------
    xarray.DataArray
        Dims ``(c, loss, signal, trial)``; NaN where the point is not done or the target is 0.
    """
    _check_side(side)
    _check_target(target)
    aligned = ds["mc_align"].isel(k=_extreme_k(ds, side)).sel(target=target, drop=True)
    return aligned.drop_vars(["side", "rank"], errors="ignore").where(ds["done"]).rename("alignment")


def mc_method(ds: xr.Dataset) -> str:
    """How a cube's Monte Carlo was computed: ``"dense"`` or ``"lanczos"``.

    From the ``montecarlo_method`` attribute; a cube without it (format 2) is dense.
    """
    return str(ds.attrs.get("montecarlo_method", "dense"))


def _zero_tolerance(ds: xr.Dataset) -> float:
    """Relative distance to 0 (of ``max|θ|``) within which a lanczos cube's Ritz value is the atom at 0:
    the tolerance :mod:`pipeline.lanczos` used for ``mc_atom_zero``, by the sweep's data type."""
    return LANCZOS_ZERO_TOLERANCE[cube_spec(ds).montecarlo.dtype]


def _atom_count(ds: xr.Dataset) -> xr.DataArray:
    """How many Monte Carlo eigenvalues belong to the atom at 0 (the theory's mass times p)."""
    p = ds.sizes["eig"]
    # Computed now: a lazy (dask) array cannot index another one.
    count: xr.DataArray = (ds["atom_zero"].fillna(0.0) * p).round().astype(int).clip(0, p - 1).compute()
    return count


def extreme_eigenvalue(ds: xr.Dataset, side: str) -> xr.DataArray:
    """The extreme Monte Carlo eigenvalue of every point on ``side``, whatever the cube's method.

    On the right the largest eigenvalue; on the left the smallest one beyond the atom at 0
    (where the theory has one, ``atom_zero > 0``, the ``p − n`` zeros of ``p > n`` are skipped).
    A dense cube gives them from ``eigenvalues`` (on the left at position ``round(atom_zero·p)``,
    the Hessian being semi-definite there); a lanczos cube from ``mc_extreme`` (the extreme Ritz
    values, within ``mc_residual·max|θ|`` of an eigenvalue), and on the left past an atom from the
    smallest quadrature node farther from 0 than the zero tolerance of :mod:`pipeline.lanczos`
    (``mc_extreme``'s bottom values are the atom's own zeros there).

    Parameters
    ----------
    ds : xarray.Dataset
        A cube (:func:`pipeline.open_cube`), lazy or loaded, or a selection of one.
    side : {"right", "left"}

    Returns
    -------
    xarray.DataArray
        Dims ``(c, loss, signal, trial)`` (those of ``ds``), named ``eigenvalue``; NaN where the
        point is not done.

    Raises
    ------
    ValueError
        For a bad ``side``, or a lanczos cube without extreme pairs (``montecarlo.k = 0``).

    See Also
    --------
    extreme_gap, mc_distribution
    """
    _check_side(side)
    if mc_method(ds) == "dense":
        eigenvalues = ds["eigenvalues"]
        extreme = eigenvalues.isel(eig=-1 if side == "right" else _atom_count(ds))
    else:
        extreme = ds["mc_extreme"].isel(k=_extreme_k(ds, side))
        if side == "left":
            nodes = ds["mc_nodes"]
            size = abs(nodes)
            zero = size <= _zero_tolerance(ds) * size.max("node")
            beyond_atom = nodes.where(~zero).min("node")
            extreme = beyond_atom.where(ds["atom_zero"] > 0, extreme)
    dropped = ["eig", "k", "side", "rank"]
    return extreme.drop_vars(dropped, errors="ignore").where(ds["done"]).rename("eigenvalue")


def extreme_gap(ds: xr.Dataset, side: str) -> xr.DataArray:
    """How far the extreme Monte Carlo eigenvalue lies beyond the theory's edge on ``side``.

    ``λ_max − edge_right`` on the right, ``edge_left − λ_min`` on the left (``λ_min`` the smallest
    eigenvalue beyond the atom at 0), from :func:`extreme_eigenvalue`; positive for an outlier,
    ``O(p^{-2/3})`` around 0 otherwise.

    Returns
    -------
    xarray.DataArray
        Dims ``(c, loss, signal, trial)``; NaN where the edge is infinite or the point not done.
    """
    extreme = extreme_eigenvalue(ds, side)
    gap = extreme - ds["edge_right"] if side == "right" else ds["edge_left"] - extreme
    finite = np.isfinite(ds["edge_right" if side == "right" else "edge_left"])
    return gap.where(ds["done"] & finite).rename("gap")


@dataclass(frozen=True)
class SpectralMeasure:
    """A point's Monte Carlo spectral measure, pooled over its done trials.

    Attributes
    ----------
    nodes : numpy.ndarray
        Ascending: the eigenvalues (dense cubes) or the quadrature nodes (lanczos cubes); those
        within rounding (dense) or the zero tolerance (lanczos) of 0 set to exactly 0, where they
        meet the theory's atom.
    weights : numpy.ndarray
        Each node's mass, summing to 1: ``1/N`` for ``N`` eigenvalues, the quadrature weights
        divided by the number of trials (the trials' quadratures averaged).
    cumulative : numpy.ndarray
        The distribution function at each node (right-continuous), ending at 1.
    trials : int
        The done trials pooled.
    quadrature : bool
        Whether the nodes are a quadrature (lanczos) rather than a sample of eigenvalues.
    """

    nodes: np.ndarray
    weights: np.ndarray
    cumulative: np.ndarray
    trials: int
    quadrature: bool

    def cdf(self, x: np.ndarray | float) -> np.ndarray:
        """The measure's distribution function ``F(x) = Σ_{node ≤ x} weight``, a staircase.

        A quadrature's true distribution function lies between the staircase's values on either
        side of each node (:meth:`pipeline.lanczos.LanczosResult.cdf` draws the line through
        their middles); the staircase is the measure itself, whose Kolmogorov and Wasserstein
        distances :func:`fit_statistics` reports.

        Examples
        --------
        >>> measure = SpectralMeasure(np.array([0.0, 1.0]), np.array([0.25, 0.75]),
        ...                           np.array([0.25, 1.0]), trials=1, quadrature=True)
        >>> measure.cdf(np.array([-1.0, 0.0, 0.5, 1.0])).tolist()
        [0.0, 0.25, 0.25, 1.0]
        """
        at = np.searchsorted(self.nodes, np.asarray(x, dtype=float), side="right")
        return np.concatenate([[0.0], self.cumulative])[at]

    def quantile(self, levels: np.ndarray | Sequence[float]) -> np.ndarray:
        """Quantiles: a sample's own (:func:`numpy.quantile`), a quadrature's linear between the
        middles of its steps (as :meth:`pipeline.lanczos.LanczosResult.cdf`)."""
        levels = np.asarray(levels, dtype=float)
        if not self.quadrature:
            return np.asarray(np.quantile(self.nodes, levels))
        return np.interp(levels, self.cumulative - self.weights / 2, self.nodes)


def _sample_measure(values: np.ndarray, trials: int) -> SpectralMeasure:
    """The pooled eigenvalues of ``trials`` trials, each of mass ``1/N``."""
    nodes = _snap_zeros(np.sort(values.ravel()))
    size = nodes.size
    # i/N exactly (a cumulative sum of 1/N would round): the Kolmogorov distance is then
    # scipy's to the last bit.
    return SpectralMeasure(nodes, np.full(size, 1.0 / size), np.arange(1, size + 1) / size, trials, False)


def _quadrature_measure(nodes: np.ndarray, weights: np.ndarray, tolerance: float) -> SpectralMeasure:
    """The trials' quadratures (rows, NaN padded) averaged: nodes pooled, weights divided by the trials.

    Each trial's nodes within ``tolerance·max|θ|`` of 0 (its own ``max``, as the quadrature
    measured its atom) are set to 0.
    """
    pooled_nodes, pooled_weights = [], []
    for row_nodes, row_weights in zip(nodes, weights, strict=True):
        kept = np.isfinite(row_nodes) & np.isfinite(row_weights)
        row = row_nodes[kept]
        scale = float(np.abs(row).max(initial=0.0))
        pooled_nodes.append(np.where(np.abs(row) <= tolerance * scale, 0.0, row))
        pooled_weights.append(row_weights[kept] / row_weights[kept].sum())
    trials = len(pooled_nodes)
    flat = np.concatenate(pooled_nodes)
    order = np.argsort(flat, kind="stable")
    mass = np.concatenate(pooled_weights)[order] / trials
    cumulative = np.cumsum(mass)
    return SpectralMeasure(flat[order], mass, cumulative / cumulative[-1], trials, True)


def mc_distribution(point: xr.Dataset, ds: xr.Dataset | None = None) -> SpectralMeasure:
    """The Monte Carlo spectral measure of one point ``(c, loss, signal)``, its done trials pooled.

    A dense cube gives the empirical law of the pooled eigenvalues; a lanczos cube the pooled
    stochastic Lanczos quadrature (``mc_nodes``, ``mc_weights``: each trial's weights sum to 1,
    the trials' are averaged).  Either way a discrete measure whose distribution function,
    :meth:`SpectralMeasure.cdf`, estimates the spectrum's; a quadrature resolves it to about
    ``1/steps`` (``pipeline/lanczos.py``).

    Parameters
    ----------
    point : xarray.Dataset
        A cube at one ``(c, loss, signal)`` (``ds.sel(c=…, loss=…, signal=…)``), with its
        ``done`` and ``eigenvalues`` (dense) or ``mc_nodes`` and ``mc_weights`` (lanczos).
    ds : xarray.Dataset, optional
        The cube ``point`` was taken from, if ``point`` lost its attributes; by default ``point``'s
        own (``sel`` keeps them).

    Returns
    -------
    SpectralMeasure

    Raises
    ------
    ValueError
        If no trial of the point is done.

    See Also
    --------
    fit_statistics, extreme_eigenvalue
    """
    cube = point if ds is None else ds
    done = np.asarray(point["done"].transpose("trial").values, dtype=bool)
    if not done.any():
        raise ValueError("no trial of the point is done")
    method = mc_method(cube)
    spectra = [np.asarray(point[name].transpose("trial", ...).values) for name in _MC_SPECTRA[method]]
    return _measure(method, spectra, done, _zero_tolerance(cube) if method == "lanczos" else 0.0)


def _measure(
    method: str, spectra: Sequence[np.ndarray], done: np.ndarray, tolerance: float
) -> SpectralMeasure:
    """The measure of one point from its ``_MC_SPECTRA[method]`` arrays (trial first) and ``done``."""
    if method == "dense":
        return _sample_measure(spectra[0][done], int(done.sum()))
    return _quadrature_measure(spectra[0][done], spectra[1][done], tolerance)


# ----------------------------------------------------------------------------------------------
# Phase boundaries
# ----------------------------------------------------------------------------------------------


def _theory_spike(ds: xr.Dataset, side: str, target: str) -> tuple[xr.DataArray, xr.DataArray]:
    """The outermost theory spike beyond the edge on ``side`` that carries ``target``, and its
    alignment: dims ``(c, loss, signal)``, NaN where there is none."""
    spike, align = ds["spike"], ds["spike_align"].sel(target=target, drop=True)
    beyond = spike > ds["edge_right"] if side == "right" else spike < ds["edge_left"]
    carries = beyond & (align > _ALIGN_PRESENT)
    location = spike.where(carries)
    outermost = location.max("spike_index") if side == "right" else location.min("spike_index")
    chosen = (location == outermost) & carries
    return outermost, align.where(chosen).max("spike_index")


def phase_boundary(
    ds: xr.Dataset,
    loss: str,
    source: str = "theory",
    side: str = "right",
    target: str | None = None,
) -> xr.DataArray:
    """The critical signal at which an isolated eigenvalue appears, for every ``c`` of the cube.

    Parameters
    ----------
    ds : xarray.Dataset
        A cube (:func:`pipeline.open_cube`).
    loss : str
        A loss of the cube's grid.
    source : {"theory", "mc"}
        ``"theory"``: the grid bracket where the theory's spike on ``side`` first appears, then
        the root of :func:`pipeline.theory.spike_margin` (``det G`` at the edge) in the signal,
        re-solving scenarios rebuilt from the cube's sweep — exact to about 1e-10 of the grid
        spacing (where ``det G`` at the edge is unavailable, bisection on the spike's presence in
        :func:`pipeline.theory.solve`, to 1e-4 of the spacing, said in ``note``).  ``"mc"``:
        estimated from the trials (see Notes).
    side : {"right", "left"}
        Where the spike leaves the bulk.
    target : {"mu", "w_star", "w"}, optional
        The vector the spike's eigenvector aligns with; by default the one the signal acts on
        (:func:`signal_vector`).

    Returns
    -------
    xarray.DataArray
        Dim ``c``, named ``boundary``: the critical signal, NaN where the grid does not bracket
        a transition (no spike on that side, a spike already at the first signal, spikes not
        defined for an unbounded law of ``g``).  Coordinate ``uncertainty`` (dim ``c``): the
        root-finding tolerance for the theory, the Monte Carlo estimate's uncertainty (see
        Notes) otherwise.  Attributes ``source``, ``side``, ``target``, ``signal`` (the swept field) and
        ``note`` (why some values are NaN).

    Notes
    -----
    The Monte Carlo estimate counts, at each grid value, the trials that show an outlier: the
    extreme eigenvalue beyond the theory's edge (:func:`extreme_gap` > 0) with an eigenvector
    carrying the target more than a random direction does (cos² > ``10.83/p``, which 99.9% of
    random directions stay below).  The boundary is where that fraction crosses 1/2 for good,
    linearly between grid values (for a single trial, whose fraction is 0 or 1, the middle of
    the grid step where its outlier appears).  No shape of the gap is assumed: it grows like
    ``(s − s_c)²`` past a BBP transition but about linearly past the model-induced one of
    ``sweeps/model_right``, and extrapolations that assume one fail on the other.

    The uncertainty combines the spread (standard deviation) of the single trials' boundaries —
    at finite ``p`` the transition is smeared over a window ``~p^{-1/3}``, and the outlier
    appears at a different signal in each trial — with the grid's resolution at the crossing
    (half the grid step: with a few trials the fraction often jumps from 0 to 1 within one step,
    and the transition can lie anywhere in it).
    """
    if source not in ("theory", "mc"):
        raise ValueError(f"source: must be 'theory' or 'mc', not {source!r}")
    _check_side(side)
    target = signal_vector(ds) if target is None else target
    _check_target(target)
    losses = [str(name) for name in ds["loss"].values]
    if loss not in losses:
        raise ValueError(f"loss: {loss!r} is not in the cube (it has {', '.join(losses)})")
    point = ds.sel(loss=loss)
    signal = point["signal"].values.astype(float)
    if source == "theory":
        values, uncertainty, notes = _theory_boundary(ds, loss, side, target, signal)
    else:
        values, uncertainty, notes = _mc_boundary(ds, loss, side, target, signal)
    spec = json.loads(ds.attrs["spec"])
    return xr.DataArray(
        values,
        dims=("c",),
        coords={"c": ds["c"].values, "uncertainty": ("c", uncertainty)},
        name="boundary",
        attrs={
            "source": source,
            "side": side,
            "target": target,
            "loss": loss,
            "signal": spec["signal"],
            "note": "; ".join(notes),
        },
    )


def _onset(present: np.ndarray, known: np.ndarray | None = None) -> int | None:
    """The first index where ``present`` turns on after being off, or ``None``.

    With ``known``, only where both values are known (a failed point brackets nothing).
    """
    known = np.ones(present.shape, dtype=bool) if known is None else known
    for j in range(1, present.size):
        if present[j] and not present[j - 1] and known[j] and known[j - 1]:
            return j
    return None


def _theory_boundary(
    ds: xr.Dataset, loss: str, side: str, target: str, signal: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    spec = cube_spec(ds)
    point = ds.sel(loss=loss)
    location, _ = _theory_spike(point, side, target)
    present = location.notnull().transpose("c", "signal").values
    solved = np.isfinite(point[f"edge_{side}"].transpose("c", "signal").values)
    defined = point["spikes_defined"].values.any()
    values = np.full(ds.sizes["c"], np.nan)
    uncertainty = np.zeros(ds.sizes["c"])
    notes: list[str] = []
    if not defined:
        notes.append(f"loss {loss}: spikes are not defined (unbounded law of g)")
        return values, uncertainty, notes
    for i_c, c in enumerate(ds["c"].values.astype(float)):
        onset = _onset(present[i_c], solved[i_c])
        if onset is None:
            notes.append(f"c = {c:g}: no spike appears on the {side} within the grid")
            continue
        a, b = signal[onset - 1], signal[onset]

        def margin(value: float, c: float = c) -> float:
            return spike_margin(spec.scenario_at(c, loss, value), side)

        def present_at(value: float, c: float = c) -> bool:
            result = solve(spec.scenario_at(c, loss, value), points=spec.theory.points)
            edge = result.edge_right if side == "right" else result.edge_left
            beyond = result.spikes > edge if side == "right" else result.spikes < edge
            return bool(np.any(beyond & (result.spike_align[target] > _ALIGN_PRESENT)))

        root = _bracketed_root(margin, a, b)
        if root is not None:
            values[i_c], uncertainty[i_c] = root, _BOUNDARY_XTOL * (b - a)
            continue
        # det G at the edge is not available (an edge the edge equations did not converge to, so
        # no δ there) or has no sign change: bisect on whether solve() sees the spike.
        values[i_c], uncertainty[i_c] = _bisect_presence(present_at, a, b)
        notes.append(
            f"c = {c:g}: det G at the edge unavailable in [{a:g}, {b:g}]; bisected on the spike's "
            f"presence to ±{uncertainty[i_c]:.1e}"
        )
    return values, uncertainty, notes


def _bracketed_root(function: Callable[[float], float], a: float, b: float) -> float | None:
    """A root of ``function`` in ``[a, b]`` (the first sign change), or ``None`` (also where the
    function is NaN at the ends or on the way)."""
    values = np.array([function(a), function(b)])
    if np.isnan(values).any():
        return None
    points = np.array([a, b])
    if not np.sign(values[0]) * np.sign(values[1]) < 0:
        points = np.linspace(a, b, _BRACKET_SPLITS + 1)
        values = np.array([values[0], *(function(x) for x in points[1:-1]), values[1]])
    changes = np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0)
    if changes.size == 0 or np.isnan(values[: changes[0] + 2]).any():
        return None
    lo, hi = points[changes[0]], points[changes[0] + 1]
    try:
        return float(brentq(function, lo, hi, xtol=_BOUNDARY_XTOL * (b - a)))
    except ValueError:  # a NaN met inside the bracket
        return None


def _bisect_presence(present: Callable[[float], bool], a: float, b: float) -> tuple[float, float]:
    """Bisection on ``present`` (off at ``a``, on at ``b``): the middle and half-width at the end.

    The half-width stops at ``_PRESENCE_XTOL`` of the bracket: a spike closer to the edge than the
    spike scan resolves is not seen, which biases presence by about that much (bench/boundary.py).
    """
    width = b - a
    while b - a > 2 * _PRESENCE_XTOL * width:
        middle = 0.5 * (a + b)
        a, b = (a, middle) if present(middle) else (middle, b)
    return 0.5 * (a + b), 0.5 * (b - a)


def _mc_boundary(
    ds: xr.Dataset, loss: str, side: str, target: str, signal: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    # The sweep's p: a lanczos cube has no `eig` dimension to read it from.
    p = cube_spec(ds).p
    point = ds.sel(loss=loss)
    gap = extreme_gap(point, side).transpose("c", "signal", "trial").values
    # A zero target (the signal's first value is often 0) has no alignment: count it as none.
    align = extreme_alignment(point, target, side).fillna(0.0).transpose("c", "signal", "trial").values
    values = np.full(ds.sizes["c"], np.nan)
    uncertainty = np.full(ds.sizes["c"], np.nan)
    notes: list[str] = []
    bounded = bool(np.isfinite(point[f"edge_{side}"]).any())
    if not bounded:
        notes.append(f"loss {loss}: the spectrum is unbounded on the {side}: no gap to measure")
        return values, uncertainty, notes
    for i_c, c in enumerate(ds["c"].values.astype(float)):
        trials = np.flatnonzero(np.isfinite(gap[i_c]).all(axis=0))
        if trials.size < 2:
            notes.append(f"c = {c:g}: fewer than two complete trials")
            continue
        outlier = (gap[i_c][:, trials] > 0) & (align[i_c][:, trials] > _RANDOM_ALIGN / p)
        estimate = _half_crossing(signal, outlier.mean(axis=1))
        if math.isnan(estimate):
            notes.append(f"c = {c:g}: no outlier appears on the {side} within the grid")
            continue
        # Each trial's own transition: the middle of the grid step where its outlier appears for
        # good.  Their spread is the finite-p smearing of the transition, trial to trial.
        own = np.array([_half_crossing(signal, outlier[:, t].astype(float)) for t in range(trials.size)])
        spread = float(np.std(own[np.isfinite(own)], ddof=1)) if np.isfinite(own).sum() > 1 else 0.0
        onset = int(np.searchsorted(signal, estimate))
        # Half the grid step: the fraction often jumps from below 1/2 to 1 within one step, and
        # the transition can then lie anywhere in it.
        resolution = 0.5 * (signal[onset] - signal[onset - 1])
        values[i_c] = estimate
        uncertainty[i_c] = math.hypot(spread, resolution)
    return values, uncertainty, notes


def _half_crossing(signal: np.ndarray, fraction: np.ndarray) -> float:
    """Where ``fraction`` (of trials with an outlier) crosses 1/2 for good, linear between grid
    values; NaN if it does not within the grid (or is at least 1/2 from the first value on)."""
    settled = np.logical_and.accumulate((fraction >= 0.5)[::-1])[::-1]
    onset = _onset(settled)
    if onset is None:
        return math.nan
    f0, f1 = fraction[onset - 1], fraction[onset]
    s0, s1 = signal[onset - 1], signal[onset]
    return float(s0 + (0.5 - f0) / (f1 - f0) * (s1 - s0))


# ----------------------------------------------------------------------------------------------
# Alignment along the signal
# ----------------------------------------------------------------------------------------------


def grid_value(ds: xr.Dataset, dim: str, value: float) -> float:
    """The value of the numeric axis ``dim`` equal to ``value`` up to rounding.

    Equal within a relative tolerance of 1e-9 (absolute 1e-12 about 0), as ``hessweep query
    --sel``: ``0.3`` finds the ``0.30000000000000004`` of a linspace axis, while two grid values,
    distinct floats written with at most ~16 digits, are never confused.

    Raises
    ------
    ValueError
        Naming ``dim`` and the grid's values, if none matches.
    """
    grid = np.asarray(ds[dim].values, dtype=float)
    found = np.flatnonzero(np.isclose(grid, float(value), rtol=_MATCH_RTOL, atol=_MATCH_ATOL))
    if found.size != 1:
        shown = ", ".join(f"{v:g}" for v in grid)
        raise ValueError(f"{dim}: {value!r} is not a value of the grid ({dim}: {shown})")
    return float(grid[found[0]])


def alignment_curve(
    ds: xr.Dataset, loss: str, c: float, target: str | None = None, side: str = "auto"
) -> xr.Dataset:
    """Squared cosine of the extreme eigenvector with ``target`` along the signal.

    Parameters
    ----------
    ds : xarray.Dataset
        A cube.
    loss : str
        A loss of the grid.
    c : float
        A value of the ``c`` axis.
    target : {"mu", "w_star", "w"}, optional
        By default the vector the signal acts on.
    side : {"auto", "right", "left"}
        Which extreme eigenvector; ``"auto"`` takes the side whose theory spikes carry the
        target the most (the Monte Carlo alignment where the theory has no spike there).

    Returns
    -------
    xarray.Dataset
        Dim ``signal``: ``mc_mean``, ``mc_std`` (spread over the done trials, ``ddof = 1``),
        ``mc_sem`` (standard error of the mean), ``trials`` (how many were done) and ``theory``
        (the alignment of the theory's spike on that side; 0 where there is none, NaN where
        spikes are not defined).  Attributes ``side`` (resolved), ``target``, ``loss``, ``c``.
    """
    target = signal_vector(ds) if target is None else target
    _check_target(target)
    point = ds.sel(loss=loss, c=grid_value(ds, "c", c))
    if side == "auto":
        side = _dominant_side(point, target)
    _check_side(side)
    aligned = extreme_alignment(point, target, side)
    trials = aligned.notnull().sum("trial")
    mean = aligned.mean("trial")
    spread = aligned.std("trial", ddof=1).where(trials > 1)
    _, theory = _theory_spike(point, side, target)
    theory = theory.fillna(0.0).where(point["spikes_defined"])
    return xr.Dataset(
        {
            "mc_mean": mean,
            "mc_std": spread,
            "mc_sem": spread / np.sqrt(trials.where(trials > 0)),
            "trials": trials,
            "theory": theory,
        },
        attrs={"side": side, "target": target, "loss": loss, "c": float(point["c"])},
    )


def _dominant_side(point: xr.Dataset, target: str) -> str:
    """The side whose theory spikes (else Monte Carlo extremes) carry ``target`` the most."""
    theory = {side: float(_theory_spike(point, side, target)[1].fillna(0.0).sum()) for side in SIDES}
    if max(theory.values()) > 0:
        return max(SIDES, key=lambda side: theory[side])
    measured = {side: float(extreme_alignment(point, target, side).fillna(0.0).sum()) for side in SIDES}
    return max(SIDES, key=lambda side: measured[side])


# ----------------------------------------------------------------------------------------------
# Fit statistics
# ----------------------------------------------------------------------------------------------


def _ks(measure: SpectralMeasure, cdf: Callable[[np.ndarray], np.ndarray]) -> float:
    """Kolmogorov distance between a discrete measure and the continuous-but-for-atoms ``cdf``.

    The sup of ``|F_mc − F|`` is reached on one side of a node: ``F_mc`` is constant between
    nodes and ``F`` non-decreasing.  ``cdf`` is evaluated at each node and just below it (it may
    jump there: an atom); tied nodes (the zeros of an atom) are handled by taking, among them,
    the largest step above and the smallest below.  For ``N`` eigenvalues of mass ``1/N``, the
    statistic of :func:`scipy.stats.kstest`.
    """
    at = cdf(measure.nodes)
    below = cdf(np.nextafter(measure.nodes, -np.inf))
    upper = measure.cumulative - at
    lower = below - np.concatenate([[0.0], measure.cumulative[:-1]])
    return float(max(upper.max(), lower.max()))


def _w1(measure: SpectralMeasure, cdf: Callable[[np.ndarray], np.ndarray], support: np.ndarray) -> float:
    """Wasserstein-1 distance ``∫ |F_mc − F|`` between a discrete measure and ``cdf``.

    Integrated over the union of the nodes and ``support`` (abscissae that resolve ``F``): on
    each piece ``F_mc`` is constant and ``F`` is taken at the piece's middle.
    """
    z = np.unique(np.concatenate([measure.nodes, support]))
    middle = 0.5 * (z[1:] + z[:-1])
    return float(np.sum(np.abs(measure.cdf(middle) - cdf(middle)) * np.diff(z)))


def _theory_cdf(x: np.ndarray, density: np.ndarray, atom: float) -> Callable[[np.ndarray], np.ndarray]:
    cumulative = cumulative_mass(x, density)

    def cdf(values: np.ndarray) -> np.ndarray:
        continuous = np.interp(values, x, cumulative, left=0.0, right=cumulative[-1])
        return continuous + atom * (values >= 0)

    return cdf


def _snap_zeros(sample: np.ndarray) -> np.ndarray:
    """Eigenvalues within rounding of 0 set to 0, where they meet the theory's atom."""
    tolerance = sample.size * np.finfo(float).eps * max(float(np.abs(sample).max()), 1e-300)
    return np.where(np.abs(sample) <= tolerance, 0.0, sample)


@dataclass(frozen=True)
class MarchenkoPasturFit:
    """The shifted and scaled Marchenko–Pastur law closest to a sample.

    ``shift + scale · MP(c)``; ``ks`` and ``w1`` are the sample's distances to it.
    """

    shift: float
    scale: float
    ks: float
    w1: float


def _mp_edges(c: float) -> tuple[float, float]:
    return (1.0 - math.sqrt(c)) ** 2, (1.0 + math.sqrt(c)) ** 2


def marchenko_pastur_density(x: np.ndarray, c: float, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """Density of ``shift + scale · MP(c)`` (continuous part; the atom ``max(0, 1 − 1/c)`` at
    ``shift`` is left out).  A negative ``scale`` mirrors the law.

    ``MP(c)`` is the limiting eigenvalue law of ``XᵀX/n``, ``X`` of ``n × p`` standard Gaussians,
    ``p/n → c``: density ``√((b − x)(x − a)) / (2πcx)`` on ``[a, b] = [(1 − √c)², (1 + √c)²]``.

    Examples
    --------
    >>> round(float(marchenko_pastur_density(np.array([1.0]), 1.0)[0]), 6)  # √3/(2π) at c = 1
    0.275664
    """
    u = (np.asarray(x, dtype=float) - shift) / scale
    a, b = _mp_edges(c)
    inside = (u > a) & (u < b)
    safe = np.where(inside, u, 1.0)
    value = np.sqrt(np.maximum((b - safe) * (safe - a), 0.0)) / (2.0 * math.pi * c * safe)
    return np.where(inside, value / abs(scale), 0.0)


def _mp_table(c: float) -> tuple[np.ndarray, np.ndarray]:
    """Abscissae and distribution function of ``MP(c)``'s continuous part (mass ``min(1, 1/c)``)."""
    theta = np.linspace(0.0, math.pi, _MP_POINTS)
    x = 1.0 + c - 2.0 * math.sqrt(c) * np.cos(theta)
    # ρ(x) dx = 4c sin²θ / (2πc x) dθ: smooth in θ.  At c = 1, x = 0 at θ = 0, where the
    # integrand tends to 2 cos²(θ/2)/π = 2/π.
    integrand = np.divide(
        2.0 * np.sin(theta) ** 2, math.pi * x, out=np.full_like(x, 2.0 / math.pi), where=x > 0
    )
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(theta))])
    # The mass is min(1, 1/c) exactly; the rule's error (~1e-14) is normalised away.
    return x, cumulative * (min(1.0, 1.0 / c) / cumulative[-1])


def marchenko_pastur_cdf(values: np.ndarray, c: float, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """Distribution function of ``shift + scale · MP(c)``, the atom at ``shift`` (``c > 1``) included.

    Examples
    --------
    >>> float(marchenko_pastur_cdf(np.array([4.0]), 1.0)[0])  # the right edge at c = 1
    1.0
    """
    x, cumulative = _mp_table(c)
    u = (np.asarray(values, dtype=float) - shift) / scale
    atom = max(0.0, 1.0 - 1.0 / c)
    return np.interp(u, x, cumulative, left=0.0, right=cumulative[-1]) + atom * (u >= 0)


def marchenko_pastur_fit(
    eigenvalues: np.ndarray, c: float, weights: np.ndarray | None = None
) -> MarchenkoPasturFit:
    """The shifted and scaled Marchenko–Pastur law ``shift + scale · MP(c)`` closest to a sample.

    Closest in Kolmogorov distance: a least-squares line through the sorted eigenvalues against
    the ``MP(c)`` quantiles at ``(i − ½)/n`` (the Wasserstein-2 fit, exact up to sampling error
    for a sample of the family) starts a Nelder–Mead search over ``(shift, scale)``.  The
    distances of the sample to the fitted law say how MP-like the spectrum is (the paper's fig. 3:
    the logistic loss's bulk is, the exponential loss's is not).  A negative ``scale`` is allowed
    (a mirrored MP law).  For ``c > 1`` the ``p − n`` zeros of the null space are common to the
    Hessian and to every MP law of ratio ``c``: the fraction ``1 − 1/c`` of eigenvalues nearest 0
    is set aside and the rest is compared with the continuous part.

    With ``weights`` the sample is a weighted discrete measure (a Lanczos quadrature,
    :func:`mc_distribution`): the line is fitted by weighted least squares against the ``MP(c)``
    quantiles at the middles of the measure's steps, the distances are the measure's; for
    ``c > 1`` its nodes at exactly 0 are set aside (snap them first, as :func:`mc_distribution`
    does) — a quadrature's weight at 0 estimates ``1 − 1/c`` with an error ``O(1/√(probes·p))``,
    larger than a node's weight, so counting it off by weight would also remove bulk nodes.

    Parameters
    ----------
    eigenvalues : numpy.ndarray
        The sample (any order), or the nodes of a weighted measure.
    c : float
        The ratio of the Marchenko–Pastur law (the cube's ``c``).
    weights : numpy.ndarray, optional
        The nodes' masses (non-negative, any sum: normalised here); by default ``1/n`` each.

    Returns
    -------
    MarchenkoPasturFit

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1000, 500))
    >>> fit = marchenko_pastur_fit(0.25 + 2.0 * np.linalg.eigvalsh(x.T @ x / 1000), 0.5)
    >>> round(fit.shift, 1), round(fit.scale, 1), fit.ks < 0.02
    (0.2, 2.0, True)
    """
    values = np.asarray(eigenvalues, dtype=float)
    if weights is None:
        sample = np.sort(values)
        if c > 1:
            zeros = round(sample.size * (1.0 - 1.0 / c))
            sample = np.sort(sample[np.argsort(np.abs(sample), kind="stable")[zeros:]])
        measure = _sample_measure(sample, trials=1)
    else:
        mass = np.asarray(weights, dtype=float)
        kept = values != 0.0 if c > 1 else np.ones(values.size, dtype=bool)
        order = np.argsort(values[kept], kind="stable")
        nodes, mass = values[kept][order], mass[kept][order] / mass[kept].sum()
        cumulative = np.cumsum(mass)
        measure = SpectralMeasure(nodes, mass, cumulative / cumulative[-1], trials=1, quadrature=True)
    x, cumulative = _mp_table(c)
    cumulative = cumulative / cumulative[-1]
    # The middles of the measure's steps: (i − ½)/n for a sample.
    levels = measure.cumulative - measure.weights / 2
    # Weighted least squares (polyfit's weights multiply the residuals: the root of the masses).
    root_mass = np.sqrt(measure.weights)

    def law(shift: float, scale: float) -> Callable[[np.ndarray], np.ndarray]:
        def cdf(values: np.ndarray) -> np.ndarray:
            below = np.interp(
                (np.asarray(values, dtype=float) - shift) / scale, x, cumulative, left=0.0, right=1.0
            )
            # A negative scale mirrors the law: P(shift + scale·M ≤ v) = P(M ≥ (v − shift)/scale).
            return below if scale > 0 else 1.0 - below

        return cdf

    def fitted(orientation: int) -> tuple[float, float, float]:
        """(KS, shift, scale) of the best law with a scale of the sign ``orientation``."""
        # The sorted sample against the quantiles of ±MP: those of −MP are −Q(1 − u).
        quantiles = np.interp(levels if orientation > 0 else 1.0 - levels, cumulative, x)
        start_scale, start_shift = (float(v) for v in np.polyfit(quantiles, measure.nodes, 1, w=root_mass))
        start_scale = orientation * max(abs(start_scale), np.finfo(float).tiny)

        def unpack(params: np.ndarray) -> tuple[float, float]:
            # Relative to the start: a shift in units of the scale, the log of the scale.
            return start_shift + abs(start_scale) * float(params[0]), start_scale * math.exp(float(params[1]))

        best = minimize(
            lambda params: _ks(measure, law(*unpack(params))),
            np.zeros(2),
            method="Nelder-Mead",
            options={"xatol": _MP_FIT_XTOL, "fatol": _MP_FIT_FTOL, "maxfev": _MP_FIT_EVALUATIONS},
        )
        return (float(best.fun), *unpack(best.x))

    _, shift, scale = min(fitted(+1), fitted(-1))
    cdf = law(shift, scale)
    return MarchenkoPasturFit(shift, scale, _ks(measure, cdf), _w1(measure, cdf, np.sort(shift + scale * x)))


def fit_statistics(ds: xr.Dataset) -> xr.Dataset:
    """Per point, how well the Monte Carlo spectrum (all done trials pooled) fits the theory and
    the nearest Marchenko–Pastur law.

    The Monte Carlo spectrum is the measure of :func:`mc_distribution`: the pooled eigenvalues of
    a dense cube, the pooled Lanczos quadrature of a lanczos cube.  A quadrature's distribution
    function resolves the spectrum's to about ``1/steps`` only (its staircase's steps are the
    nodes' weights): its distances to the theory level off there however large ``p``, where a
    sample's keep shrinking like ``1/√(eigenvalue_count)``.

    Returns
    -------
    xarray.Dataset
        Dims ``(c, loss, signal)``: ``ks`` and ``w1``, the Kolmogorov and Wasserstein-1 distances
        between the measure and the limiting law (its atom at 0 included; eigenvalues within
        rounding of 0, Ritz values within the quadrature's zero tolerance, count as 0);
        ``mp_shift``, ``mp_scale``, ``mp_ks``, ``mp_w1`` from :func:`marchenko_pastur_fit` (with
        the quadrature's weights in a lanczos cube); ``eigenvalue_count``, the eigenvalues pooled
        (dense) or the quadrature nodes pooled (lanczos: ``probes × steps`` a trial).  NaN where
        no trial is done or the theory is missing.  Attribute ``montecarlo_method``.  Kolmogorov
        distances of a correct law shrink like ``1/√(eigenvalue_count)`` and ``1/p``
        (finite-size effects of the edges) for a dense cube; a spectrum is MP-like when
        ``mp_ks`` is of the same order as ``ks``.
    """
    method = mc_method(ds)
    monte_carlo = list(_MC_SPECTRA[method])
    loaded = ds[[*monte_carlo, "density", "density_x", "atom_zero", "done"]].load()
    shape = (ds.sizes["c"], ds.sizes["loss"], ds.sizes["signal"])
    names = ("ks", "w1", "mp_shift", "mp_scale", "mp_ks", "mp_w1")
    out = {name: np.full(shape, np.nan) for name in names}
    count = np.zeros(shape, dtype=int)
    order = ("c", "loss", "signal")
    spectra = [loaded[name].transpose(*order, "trial", ...).values for name in monte_carlo]
    done = loaded["done"].transpose(*order, "trial").values
    x_grid = loaded["density_x"].transpose(*order, "x").values
    density = loaded["density"].transpose(*order, "x").values
    atom = loaded["atom_zero"].transpose(*order).values
    c_values = ds["c"].values.astype(float)
    tolerance = _zero_tolerance(ds) if method == "lanczos" else 0.0
    for index in np.ndindex(shape):
        trials = done[index]
        if not trials.any() or not np.all(np.isfinite(x_grid[index])):
            continue
        measure = _measure(method, [spectrum[index] for spectrum in spectra], trials, tolerance)
        count[index] = measure.nodes.size
        cdf = _theory_cdf(x_grid[index], density[index], float(atom[index]))
        out["ks"][index] = _ks(measure, cdf)
        out["w1"][index] = _w1(measure, cdf, x_grid[index])
        weights = measure.weights if measure.quadrature else None
        fit = marchenko_pastur_fit(measure.nodes, float(c_values[index[0]]), weights=weights)
        out["mp_shift"][index], out["mp_scale"][index] = fit.shift, fit.scale
        out["mp_ks"][index], out["mp_w1"][index] = fit.ks, fit.w1
    coords = {dim: ds[dim].values for dim in order}
    variables = {name: (order, values) for name, values in out.items()}
    variables["eigenvalue_count"] = (order, count)
    return xr.Dataset(variables, coords=coords, attrs={"montecarlo_method": method})
