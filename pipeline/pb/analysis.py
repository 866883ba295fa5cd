"""What the Pennington–Bahri theory and the network experiment say about the index near ``ε_c``.

Pennington & Bahri (ICML 2017), ``shared/theory/pennington_bahri.md``.  Two sources of the same
question — how the fraction ``α`` of negative Hessian eigenvalues leaves 0 as the energy ``ε``
passes a critical energy ``ε_c(φ)``:

* the theory (:mod:`pipeline.pb`): :func:`index_curve` is ``α(ε)`` at ``φ``, and
  :func:`fit_theory_exponent` fits the small-index law (20), ``α ≈ α₀ t^p`` with
  ``t = (ε − ε_c)/ε_c``, to it close to ``ε_c``, where it is a pure power with ``p = 3/2``;
  :func:`window_exponent` is the exponent that the network fits' free exponent should find if the
  theory held (the same fit on the theory's curve over the runs' window of ``α``);
* the network experiment (Sec. 6.4, a cube of the ``pbnet`` family): :func:`network_summary` gives
  per ``φ`` the runs kept (``converged``: ``J ≤ 10⁻⁶``, the paper's cut), the minimisers (``α = 0``)
  and their mean energy against the paper's ``½(1 − φ)²``, the fit ``α ≈ α₀(ε − ε_c)^{3/2}``
  (:func:`pipeline.pbnet.fit_index_law`) with ``ε_c`` free, the exponent fitted too, and the
  theory's ``ε_c`` (eqs. 21 and 32) at ``σ = 1`` and at the runs' own ``σ``;
  :func:`pooled_exponent` fits one exponent to every ``φ`` at once.

Only the runs whose ``done`` flag is set are read (a pending or failed point holds no run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.optimize import brentq, minimize_scalar

from pipeline.errors import ScenarioError
from pipeline.pb._args import MODELS, integer, model_name, real
from pipeline.pb.theory import critical_energy, solve
from pipeline.pbnet import fit_index_law

__all__ = [
    "PAPER_CRITICAL_ENERGY",
    "POWER_LAW_RANGE",
    "ExponentFit",
    "PooledExponent",
    "fit_theory_exponent",
    "index_curve",
    "network_summary",
    "pooled_exponent",
    "window_exponent",
]

#: The range of ``t = (ε − ε_c)/ε_c`` in which :func:`fit_theory_exponent` fits the law by default.
#: The pure power holds as ``t → 0``: the local log-slope of ``α`` is 1.4999 at ``10⁻⁴``, 1.495 at
#: ``10⁻²`` and about 1.4 at ``10⁻¹``, so the upper end ``10⁻²`` keeps the fit within 2e-3 of 3/2.
#: At ``10⁻⁴`` ``α`` is down to 2e-8–2e-7 (``α₀`` = 0.02–0.15): further in, the quadrature's
#: absolute accuracy (1e-10) would start to cost relative accuracy.
POWER_LAW_RANGE = (1e-4, 1e-2)
#: The paper's critical energies (the intercepts at ``α = 0``) read off its Fig. 6, by ``φ``.
PAPER_CRITICAL_ENERGY = {1 / 16: 0.42, 1 / 8: 0.36, 1 / 4: 0.26, 1 / 3: 0.21, 1 / 2: 0.13, 2 / 3: 0.066}

# The variables of a pbnet cube that the summary reads (all on (phi, trial)).
_NETWORK_VARIABLES = ("energy", "index", "converged", "gauss_newton_mean", "done")
# Points of the theory fit: nine log-spaced t, seven degrees of freedom.  From 5 to 33 points the
# exponent moves by 2e-4 (1.4986 -> 1.4988 at φ = 1/2), far below its offset from 3/2, while the
# standard error falls as 1/√points (4.7e-4 -> 1.2e-4), as a regression's does even when its
# residuals are systematic: the count is fixed and stated rather than raised for a smaller error.
_THEORY_POINTS = 9
# The relative tolerance of the energy where the theory's α reaches alpha_max (window_exponent): far
# below the spacing of the energies fitted.
_WINDOW_RTOL = 1e-10
# The bounds of the exponent p searched by the pooled fit: those of fit_index_law's own search
# (q = 1/p in [0.1, 3]), so that the pooled and the per-φ exponents are searched alike.
_Q_BOUNDS = (0.1, 3.0)
_Q_TOLERANCE = 1e-6
# A search that ends this close to a bound (in q) ended there: the bounded Brent search closes in on
# an end where the residual still falls to within a few xatol (measured 6e-7 at n = 16).
_AT_BOUND = 1e-4
# An rms residual in energy below this is rounding (energies are of order 0.1-1, ε_mach ~ 1e-16).
_RMS_FLOOR = 1e-15
# The central 68 % interval of the bootstrap: ±1 standard deviation of a normal law (see _spread).
_INTERVAL = (15.865, 84.135)
# A φ typed by hand matches a key of PAPER_CRITICAL_ENERGY within this relative tolerance (1/3 is
# not a float).
_PHI_RTOL = 1e-9


@dataclass(frozen=True)
class ExponentFit:
    """The law ``α ≈ α₀ t^p``, ``t = (ε − ε_c)/ε_c``, fitted to the theory's index near ``ε_c``.

    Attributes
    ----------
    phi, sigma : float
        The ratio and the mean eigenvalue of ``H₀``.
    model : str
        ``"wigner"`` or ``"product"``.
    critical_energy : float
        ``ε_c`` in closed form (eq. 21 or 32) at ``σ``.
    exponent, exponent_stderr : float
        ``p`` and its standard error from the regression of ``log α`` on ``log t``.
    alpha0, alpha0_stderr : float
        ``α₀`` and its standard error (``α₀`` times that of the intercept ``log α₀``).
    distance : tuple of float
        The range of ``t`` fitted (log-spaced points, ends included).
    points : int
        Number of energies.
    """

    phi: float
    sigma: float
    model: str
    critical_energy: float
    exponent: float
    exponent_stderr: float
    alpha0: float
    alpha0_stderr: float
    distance: tuple[float, float]
    points: int


@dataclass(frozen=True)
class PooledExponent:
    """One exponent ``p`` of ``α ≈ α₀(ε − ε_c)^p`` shared by every ``φ`` of a network experiment.

    Attributes
    ----------
    exponent : float
        ``p``, each ``φ`` keeping its own ``ε_c`` and ``α₀``.
    exponent_stderr : float
        Half the central 68 % interval of ``p`` over the bootstrap resamples (NaN without two).
    exponent_interval : tuple of float
        The 16th and 84th percentiles of those resamples.
    at_bound : bool
        ``exponent`` is an end of the search (``p = 1/3`` or ``10``): the residual falls all the way
        there, and the runs do not determine ``p``.
    phis : tuple of float
        The ratios pooled (those with at least three distinct indices in ``(0, alpha_max]``).
    points : int
        Runs fitted, all ratios together.
    bootstraps : int
        Resamples that gave a fit.
    alpha_max : float
        The cut on the index.
    """

    exponent: float
    exponent_stderr: float
    exponent_interval: tuple[float, float]
    at_bound: bool
    phis: tuple[float, ...]
    points: int
    bootstraps: int
    alpha_max: float


# ----------------------------------------------------------------------------------------------
# Theory
# ----------------------------------------------------------------------------------------------


def index_curve(
    phi: float, eps: Sequence[float] | np.ndarray, model: str = "wigner", *, sigma: float = 1.0
) -> np.ndarray:
    """The theory's index ``α(ε)``, the mass of the limiting spectrum below 0, at each energy.

    Parameters
    ----------
    phi : float
        ``φ > 0``.
    eps : array_like
        Energies ``ε >= 0``, any shape.
    model : {"wigner", "product"}, default "wigner"
    sigma : float, default 1.0
        Mean eigenvalue of ``H₀``; ``α`` depends on ``ε/σ²`` only.

    Returns
    -------
    numpy.ndarray
        ``α`` at each ``ε``, the shape of ``eps``: exactly 0 up to :func:`pipeline.pb.critical_energy`.

    Raises
    ------
    pipeline.errors.ScenarioError
        For a bad argument (as :func:`pipeline.pb.solve`), or a solve that did not converge
        (field ``eps``, its note quoted).

    Examples
    --------
    >>> index_curve(0.5, [0.0, 0.01, 0.1]).round(6).tolist()
    [0.0, 0.0, 0.113562]
    """
    energies = np.asarray(eps, dtype=float)
    alpha = np.empty(energies.shape)
    for at, energy in np.ndenumerate(energies):
        theory = solve(phi, float(energy), model, sigma=sigma)
        if not theory.converged:
            raise ScenarioError("eps", f"the theory did not converge at ε = {energy:g}: {theory.note}")
        alpha[at] = theory.index
    return alpha


def fit_theory_exponent(
    phi: float,
    model: str = "wigner",
    *,
    sigma: float = 1.0,
    distance: tuple[float, float] = POWER_LAW_RANGE,
    points: int = _THEORY_POINTS,
) -> ExponentFit:
    """Fit ``α ≈ α₀ t^p``, ``t = (ε − ε_c)/ε_c``, to the theory's index at small ``t``.

    ``α`` is computed (:func:`index_curve`) at ``points`` log-spaced ``t`` in ``distance`` and
    ``log α`` regressed on ``log t`` by ordinary least squares.  The standard errors are the
    regression's.  ``α`` is exact far beyond the curvature (its quadrature error is bounded by
    1e-10, and the local slope at ``t = 10⁻⁴`` is within 1e-3 of 3/2, ``tests/test_pb.py``), so the
    residuals are not noise: they are the curvature of ``log α`` in ``log t``, the departure of the
    theory from a pure power over the range, and the standard error says how well one exponent
    describes the curve there.  It is not a confidence interval
    for 3/2: over the default range ``p`` = 1.4982–1.4988 ± 3–4e-4 for both models and the
    paper's six ``φ``, the offset from 3/2 being the drift of the local slope, which the
    regression sees as curvature (over ``[10⁻⁵, 10⁻³]``: 1.4999).  Being a regression's, the
    standard error falls as ``1/√points`` even so (4.7e-4 at 5 points, 1.2e-4 at 33, φ = 1/2).

    Parameters
    ----------
    phi : float
        ``0 < φ < 1`` (for ``φ >= 1``, ``ε_c = 0`` and ``t`` is not defined).
    model : {"wigner", "product"}, default "wigner"
    sigma : float, default 1.0
        Mean eigenvalue of ``H₀`` (``ε_c ∝ σ²``; ``p`` and ``α₀`` do not depend on it).
    distance : tuple of float, default POWER_LAW_RANGE
        ``0 < t_min < t_max <= 10⁻²``: the law is a pure power only that close to ``ε_c``.
    points : int, default 9
        Energies, ``>= 3``.

    Returns
    -------
    ExponentFit

    Raises
    ------
    pipeline.errors.ScenarioError
        Naming the bad argument.

    Examples
    --------
    >>> fit = fit_theory_exponent(0.5)
    >>> abs(fit.exponent - 1.5) < 0.02, fit.exponent_stderr < 1e-3
    (True, True)
    """
    phi = real(phi, "phi", positive=True)
    model = model_name(model)
    sigma = real(sigma, "sigma", positive=True)
    points = integer(points, "points", minimum=3)
    low, high = (real(value, "distance", positive=True) for value in distance)
    if not low < high <= POWER_LAW_RANGE[1]:
        raise ScenarioError(
            "distance", f"must be (t_min, t_max) with 0 < t_min < t_max <= 1e-2, not {distance!r}"
        )
    if phi >= 1.0:
        raise ScenarioError("phi", f"must be < 1 (ε_c = 0 for φ >= 1), not {phi!r}")
    epsilon_c = critical_energy(phi, model, sigma=sigma)
    t = np.geomspace(low, high, points)
    alpha = index_curve(phi, epsilon_c * (1.0 + t), model, sigma=sigma)
    (slope, intercept), covariance = np.polyfit(np.log(t), np.log(alpha), 1, cov="unscaled")
    residual = np.log(alpha) - (intercept + slope * np.log(t))
    variance = float(residual @ residual) / (points - 2)
    alpha0 = math.exp(intercept)
    return ExponentFit(
        phi=phi,
        sigma=sigma,
        model=model,
        critical_energy=epsilon_c,
        exponent=float(slope),
        exponent_stderr=math.sqrt(variance * covariance[0, 0]),
        alpha0=alpha0,
        alpha0_stderr=alpha0 * math.sqrt(variance * covariance[1, 1]),
        distance=(low, high),
        points=points,
    )


def window_exponent(phi: float, model: str = "wigner", *, alpha_max: float = 0.1, points: int = 24) -> float:
    """The exponent that a fit over ``0 < α ≤ alpha_max`` finds on the theory's own ``α(ε)``.

    What the network experiment's free exponent should be if the theory held: the runs' indices
    are multiples of ``1/2n²`` (``0.002`` at ``n = 16``), which on the theory curve lies at
    ``t = (ε − ε_c)/ε_c ≈ 0.1``, already past the pure power (:data:`POWER_LAW_RANGE`), and a fit
    over ``α ≤ 0.1`` reaches ``t`` of 2–8, where ``α(ε)`` bends over.  The curve is sampled at
    ``points`` evenly spaced energies in ``(ε_c, ε*]``, ``α(ε*) = alpha_max`` (Brent's method to a
    relative 1e-10), and fitted by :func:`pipeline.pbnet.fit_index_law` with the exponent free, as
    the runs are.  It does not depend on ``σ`` (``α`` is a function of ``ε/σ²``).

    Parameters
    ----------
    phi : float
        ``0 < φ < 1``.
    model : {"wigner", "product"}, default "wigner"
    alpha_max : float, default 0.1
        The window, in ``(0, 1)``.
    points : int, default 24
        Energies, ``>= 3``.

    Returns
    -------
    float

    Raises
    ------
    pipeline.errors.ScenarioError
        Naming the bad argument.

    Examples
    --------
    >>> round(window_exponent(0.25), 2), round(window_exponent(0.25, alpha_max=1e-5), 2)
    (0.83, 1.5)
    """
    phi = real(phi, "phi", positive=True)
    model = model_name(model)
    alpha_max = _alpha_max(alpha_max)
    points = integer(points, "points", minimum=3)
    if phi >= 1.0:
        raise ScenarioError("phi", f"must be < 1 (ε_c = 0 for φ >= 1), not {phi!r}")
    epsilon_c = critical_energy(phi, model)

    def excess(eps: float) -> float:
        return float(index_curve(phi, [eps], model)[0]) - alpha_max

    high = 2.0 * epsilon_c
    while excess(high) < 0.0:
        high *= 2.0
    top = brentq(excess, epsilon_c, high, rtol=_WINDOW_RTOL)
    eps = np.linspace(epsilon_c, top, points + 1)[1:]
    # The last energy's α is alpha_max to the root's tolerance: the cut is widened by as much.
    cut = min(1.0, alpha_max * (1.0 + _WINDOW_RTOL))
    return fit_index_law(eps, index_curve(phi, eps, model), alpha_max=cut, exponent=None).exponent


# ----------------------------------------------------------------------------------------------
# The network experiment
# ----------------------------------------------------------------------------------------------


def network_summary(
    ds: xr.Dataset, *, alpha_max: float = 0.1, bootstrap: int = 200, seed: int = 0
) -> xr.Dataset:
    """Per ``φ``: runs kept, minimiser energies, the fitted small-index law and the theory's ``ε_c``.

    Runs are the points of ``ds`` whose ``done`` flag is set; the kept ones are those with
    ``converged`` (``J ≤ 10⁻⁶``: the paper discards the others); the minimisers are the kept runs
    with ``α = 0``.  On the kept runs :func:`pipeline.pbnet.fit_index_law` fits
    ``α ≈ α₀(ε − ε_c)^p`` over ``0 < α ≤ alpha_max``, once at ``p = 3/2`` (``ε_c`` with the
    regression's standard error) and once with ``p`` free.  The free exponent is a minimum of a
    profiled residual, not a regression coefficient, and with tens of runs its sampling law is
    skewed, with a long tail (synthetic surveys of 60 runs with energies scattered by 0.01 about
    an exact 3/2 law: median 1.52, central 68 % within ±0.22, standard deviation 0.31), so its
    uncertainty comes from a bootstrap over runs: the kept runs of the ratio are resampled with
    replacement ``bootstrap`` times (the cut ``α ≤ alpha_max`` applied to each resample, so that
    the number of runs fitted varies as it would between surveys) and the free fit repeated;
    resamples with too few distinct indices to fit are skipped and counted.  The uncertainty is
    half the central 68 % interval of the resamples (the standard deviation of a normal law,
    blind to the tail).  Against the spread between independent synthetic surveys it is
    conservative: 0.7–2.8 times it, median 1.2 (12 surveys each of three sizes and noise levels).
    The generator of ratio ``i`` is keyed ``(seed, i)``: the summary of one cube is reproducible.

    Parameters
    ----------
    ds : xarray.Dataset
        A cube of the ``pbnet`` family (dims ``phi``, ``trial``; the variables ``energy``,
        ``index``, ``converged``, ``gauss_newton_mean`` and ``done`` are read).
    alpha_max : float, default 0.1
        The fits use kept runs with ``0 < α ≤ alpha_max``.
    bootstrap : int, default 200
        Resamples for the free exponent's uncertainty (0: none, its uncertainty NaN).  200 put
        the 16th and 84th percentiles on 32 resamples each: their sampling error (about
        ``1/√32`` of the interval's tail mass) is a fraction of the estimate's own spread.
    seed : int, default 0
        Key of the resamples.

    Returns
    -------
    xarray.Dataset
        On ``phi`` (and ``model``: ``wigner``, ``product``):

        * ``runs``, ``kept``, ``minimisers`` — counts;
        * ``minimiser_energy``, ``minimiser_energy_se`` — mean energy of the minimisers and its
          standard error (sample standard deviation over ``√count``; NaN for fewer than 2);
          ``minimiser_energy_law`` — the paper's observation ``½(1 − φ)²``;
        * ``critical_energy``, ``critical_energy_stderr``, ``alpha0``, ``fit_points``, ``fit_rms``
          — the fit at ``p = 3/2``;
        * ``exponent``, ``exponent_stderr`` (half the bootstrap's central 68 % interval),
          ``exponent_low``, ``exponent_high`` (that interval: the 16th and 84th percentiles),
          ``exponent_bootstraps`` (resamples fitted), ``critical_energy_free`` — the fit with
          ``p`` free; ``exponent_at_bound`` — it ended at an end of the search (``p = 1/3`` or
          ``10``), where the residual still falls: the runs do not determine ``p`` (also in
          ``fit_note``; the interval then says on which side of the bound it lies);
        * ``fit_note`` — why a fit is missing (its values are then NaN), else ``""``;
        * ``sigma`` — median over the kept runs of ``gauss_newton_mean`` (``tr H₀/2n²``, the
          theory's scale);
        * ``theory_critical_energy`` (``phi``, ``model``) — eqs. (21), (32) at ``σ = 1``;
          ``theory_critical_energy_sigma`` — the same at ``σ = sigma`` (``ε_c ∝ σ²``);
        * ``paper_critical_energy`` — the paper's Fig. 6 intercept (NaN for other ``φ``).

        Attributes ``alpha_max``, ``bootstrap`` and ``seed``.

    Raises
    ------
    pipeline.errors.ScenarioError
        ``ds`` lacking a variable (field ``ds``), or a bad ``alpha_max``, ``bootstrap`` or ``seed``.
    """
    alpha_max = _alpha_max(alpha_max)
    bootstrap = integer(bootstrap, "bootstrap", minimum=0)
    seed = integer(seed, "seed", minimum=0)
    runs = _network_runs(ds)
    phis = np.asarray(ds["phi"].values, dtype=float)
    rows = [
        _summary_row(phi, *runs[i], alpha_max, bootstrap, np.random.SeedSequence(seed, spawn_key=(i,)))
        for i, phi in enumerate(phis)
    ]
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    sigma = np.array(columns["sigma"], dtype=float)
    unit = [[critical_energy(p, m) for m in MODELS] for p in phis]
    # A ratio with no kept run has no σ, hence no ε_c at it.
    at_sigma = [
        [critical_energy(p, m, sigma=s) if math.isfinite(s) else math.nan for m in MODELS]
        for p, s in zip(phis, sigma, strict=True)
    ]
    paper = [_paper_critical_energy(phi) for phi in phis]
    return xr.Dataset(
        {name: ("phi", np.asarray(values)) for name, values in columns.items()}
        | {
            "theory_critical_energy": (("phi", "model"), np.array(unit)),
            "theory_critical_energy_sigma": (("phi", "model"), np.array(at_sigma)),
            "paper_critical_energy": ("phi", np.array(paper)),
        },
        coords={"phi": phis, "model": list(MODELS)},
        attrs={"alpha_max": alpha_max, "bootstrap": bootstrap, "seed": seed},
    )


def pooled_exponent(
    ds: xr.Dataset, *, alpha_max: float = 0.1, bootstrap: int = 200, seed: int = 0
) -> PooledExponent:
    """One exponent ``p`` for every ``φ`` of a network experiment, each ``φ`` with its own ``ε_c``, ``α₀``.

    Pooling makes sense because the theory's law (20) has the same exponent 3/2 at every ``φ``:
    only ``ε_c`` and ``α₀`` depend on ``φ``.  A single ratio's few tens of runs in
    ``0 < α ≤ alpha_max`` leave its free exponent uncertain by a few tenths; pooled, the ratios
    share that one parameter.  The energies scatter differently at each ``φ`` (a residual rms
    from 0.01 to 0.05), so the ratios are not added as one least-squares problem, which would let
    the noisiest decide: with Gaussian residuals of an unknown variance per ratio, the maximum
    likelihood ``p`` minimises ``Σ_φ N_φ log RSS_φ(p)``, where ``RSS_φ(p)`` is the residual sum of
    squares of ratio ``φ``'s line ``ε = ε_c + c α^{1/p}`` (:func:`pipeline.pbnet.fit_index_law`
    at that exponent) and ``N_φ`` its runs.  Its uncertainty is a bootstrap as in
    :func:`network_summary`, resampling the kept runs within each ratio (ratio ``i`` keyed
    ``(seed, i)``).

    Parameters
    ----------
    ds : xarray.Dataset
        A cube of the ``pbnet`` family.
    alpha_max : float, default 0.1
    bootstrap : int, default 200
    seed : int, default 0
        As in :func:`network_summary`.

    Returns
    -------
    PooledExponent

    Raises
    ------
    pipeline.errors.ScenarioError
        As :func:`network_summary`; and field ``ds`` if no ratio has three distinct indices in
        ``(0, alpha_max]``.
    """
    alpha_max = _alpha_max(alpha_max)
    bootstrap = integer(bootstrap, "bootstrap", minimum=0)
    seed = integer(seed, "seed", minimum=0)
    phis = np.asarray(ds["phi"].values, dtype=float)
    groups = {}
    for i, (energy, index, _, _) in enumerate(_network_runs(ds)):
        if _fittable(index, alpha_max):
            groups[i] = (energy, index)
    if not groups:
        raise ScenarioError(
            "ds", f"no ratio has 3 distinct indices in (0, {alpha_max:g}] among its kept runs"
        )
    exponent = _pooled_fit(list(groups.values()), alpha_max)
    generators = {i: np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,))) for i in groups}
    draws = []
    for _ in range(bootstrap):
        resampled = []
        for i, (energy, index) in groups.items():
            chosen = generators[i].integers(0, energy.size, energy.size)
            resampled.append((energy[chosen], index[chosen]))
        usable = [(e, a) for e, a in resampled if _fittable(a, alpha_max)]
        if usable:
            draws.append(_pooled_fit(usable, alpha_max))
    stderr, interval = _spread(np.array(draws))
    return PooledExponent(
        exponent=exponent,
        exponent_stderr=stderr,
        exponent_interval=interval,
        at_bound=_at_bound(exponent),
        phis=tuple(float(phis[i]) for i in groups),
        points=sum(int(np.count_nonzero((a > 0) & (a <= alpha_max))) for _, a in groups.values()),
        bootstraps=len(draws),
        alpha_max=alpha_max,
    )


# ----------------------------------------------------------------------------------------------
# Implementation
# ----------------------------------------------------------------------------------------------


def _alpha_max(value: object) -> float:
    alpha_max = real(value, "alpha_max", positive=True)
    if alpha_max > 1.0:
        raise ScenarioError("alpha_max", f"must be in (0, 1], not {alpha_max!r}")
    return alpha_max


def _network_runs(ds: xr.Dataset) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Per ``φ``: the kept runs' energies, indices and ``σ``, and the number of runs done."""
    missing = [name for name in _NETWORK_VARIABLES if name not in ds.variables]
    if missing or ds["energy"].dims != ("phi", "trial"):
        reason = f"lacks {', '.join(missing)}" if missing else f"has energy on {ds['energy'].dims}"
        raise ScenarioError("ds", f"is not a pbnet cube: it {reason}, not on (phi, trial)")
    values = {name: np.asarray(ds[name].transpose("phi", "trial").values) for name in _NETWORK_VARIABLES}
    done = values["done"].astype(bool)
    kept = done & values["converged"].astype(bool)
    return [
        (
            values["energy"][i, kept[i]].astype(float),
            values["index"][i, kept[i]].astype(float),
            values["gauss_newton_mean"][i, kept[i]].astype(float),
            int(done[i].sum()),
        )
        for i in range(done.shape[0])
    ]


def _summary_row(
    phi: float,
    energy: np.ndarray,
    index: np.ndarray,
    sigma: np.ndarray,
    runs: int,
    alpha_max: float,
    bootstrap: int,
    key: np.random.SeedSequence,
) -> dict[str, object]:
    minimisers = energy[index == 0.0]
    row: dict[str, object] = {
        "runs": runs,
        "kept": energy.size,
        "minimisers": minimisers.size,
        "minimiser_energy": float(minimisers.mean()) if minimisers.size else math.nan,
        "minimiser_energy_se": (
            float(minimisers.std(ddof=1)) / math.sqrt(minimisers.size) if minimisers.size > 1 else math.nan
        ),
        "minimiser_energy_law": 0.5 * (1.0 - phi) ** 2,
        "sigma": float(np.median(sigma)) if sigma.size else math.nan,
    }
    notes = []
    try:
        fixed = fit_index_law(energy, index, alpha_max=alpha_max, exponent=1.5)
        row |= {
            "critical_energy": fixed.critical_energy,
            "critical_energy_stderr": fixed.critical_energy_stderr,
            "alpha0": fixed.alpha0,
            "fit_points": fixed.points,
            "fit_rms": fixed.rms,
        }
        if fixed.points < 3:
            # Two runs: the line passes through both, with no residual and no standard error.
            notes.append(f"p = 3/2: {fixed.points} runs in (0, {alpha_max:g}]: a line through them, no error")
    except ScenarioError as error:
        notes.append(f"p = 3/2: {error.reason}")
        row |= dict.fromkeys(("critical_energy", "critical_energy_stderr", "alpha0", "fit_rms"), math.nan)
        row["fit_points"] = int(np.count_nonzero((index > 0) & (index <= alpha_max)))
    try:
        free = fit_index_law(energy, index, alpha_max=alpha_max, exponent=None)
    except ScenarioError as error:
        notes.append(f"p free: {error.reason}")
        exponent, critical_free, bounded, draws = math.nan, math.nan, False, np.zeros(0)
    else:
        exponent, critical_free, bounded = free.exponent, free.critical_energy, _at_bound(free.exponent)
        if bounded:
            notes.append(f"p free: {exponent:.4g} is an end of the search, not determined by the runs")
        draws = _bootstrap_exponents(energy, index, alpha_max, bootstrap, key)
    row |= {"exponent": exponent, "exponent_at_bound": bounded, "critical_energy_free": critical_free}
    stderr, (low, high) = _spread(draws)
    row |= {
        "exponent_stderr": stderr,
        "exponent_low": low,
        "exponent_high": high,
        "exponent_bootstraps": draws.size,
        "fit_note": "; ".join(notes),
    }
    return row


def _bootstrap_exponents(
    energy: np.ndarray, index: np.ndarray, alpha_max: float, bootstrap: int, key: np.random.SeedSequence
) -> np.ndarray:
    """The free exponent of ``bootstrap`` resamples of the runs (those that can be fitted)."""
    generator = np.random.default_rng(key)
    draws = []
    for _ in range(bootstrap):
        chosen = generator.integers(0, energy.size, energy.size)
        try:
            fit = fit_index_law(energy[chosen], index[chosen], alpha_max=alpha_max, exponent=None)
        except ScenarioError:
            continue
        draws.append(fit.exponent)
    return np.array(draws)


def _spread(draws: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Half the 68 % percentile interval of bootstrap draws, and that interval (NaN for fewer than 2).

    Not the standard deviation: resamples whose indices barely vary put the free exponent at the
    search's bound (``p = 10``), a tail that would dominate a standard deviation; half the central
    68 % interval is the standard deviation of a normal law and ignores it.
    """
    if draws.size < 2:
        return math.nan, (math.nan, math.nan)
    low, high = np.percentile(draws, _INTERVAL)
    return 0.5 * float(high - low), (float(low), float(high))


def _at_bound(exponent: float) -> bool:
    """Whether a free exponent is an end of the search (``p = 1/3`` or ``10``), not a minimum inside it."""
    return any(abs(1.0 / exponent - bound) <= _AT_BOUND for bound in _Q_BOUNDS)


def _fittable(index: np.ndarray, alpha_max: float) -> bool:
    """Whether the free fit can be made: three distinct indices in ``(0, alpha_max]``."""
    return np.unique(index[(index > 0) & (index <= alpha_max)]).size >= 3


def _pooled_fit(groups: list[tuple[np.ndarray, np.ndarray]], alpha_max: float) -> float:
    """The exponent minimising ``Σ N log RSS`` over the groups (see :func:`pooled_exponent`)."""
    chosen = [
        (energy[(index > 0) & (index <= alpha_max)], index[(index > 0) & (index <= alpha_max)])
        for energy, index in groups
    ]

    def objective(q: float) -> float:
        total = 0.0
        for energy, alpha in chosen:
            # The line ε = ε_c + c α^q of fit_index_law; its residual sum of squares.
            design = np.column_stack([np.ones_like(alpha), alpha**q])
            _, residual, *_ = np.linalg.lstsq(design, energy, rcond=None)
            squares = float(residual[0]) if residual.size else 0.0
            # Exact data leave residuals of rounding size, possibly exactly 0: the floor keeps the
            # logarithm finite and is far below any residual of real runs (rms >= 1e-3).
            total += energy.size * math.log(max(squares, energy.size * _RMS_FLOOR**2))
        return total

    search = minimize_scalar(objective, bounds=_Q_BOUNDS, method="bounded", options={"xatol": _Q_TOLERANCE})
    return 1.0 / float(search.x)


def _paper_critical_energy(phi: float) -> float:
    for key, value in PAPER_CRITICAL_ENERGY.items():
        if math.isclose(phi, key, rel_tol=_PHI_RTOL):
            return value
    return math.nan
