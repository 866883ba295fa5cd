"""Figures of the Pennington–Bahri model and of its network experiment.

Like :mod:`pipeline.plots`, every function builds a :class:`matplotlib.figure.Figure` directly
(never through ``pyplot``: no global state, any thread, no display) and raises
:class:`pipeline.plots.PlotError`, naming the option, for a selection it cannot draw;
:func:`pipeline.plots.save` writes one.  The numbers come from :mod:`pipeline.pb.analysis` and the
cube; this module only draws them.

Of a ``pbnet`` cube (the tanh network's critical points, Sec. 6.4):

* :func:`index_energy` — the index ``α`` against the energy ``ε`` of every run, one panel per ``φ``,
  with the fitted law ``α₀(ε − ε_c)^{3/2}`` and the theory's ``α(ε)`` at the runs' ``σ``;
* :func:`critical_energy` — ``ε_c(φ)`` of the fits against eqs. (21) and (32), and the minimisers'
  energies against the paper's ``½(1 − φ)²``.

Of a ``pb`` cube (the random-matrix model itself):

* :func:`density` — the Monte Carlo spectrum of one ``(φ, ε)`` against the limiting density;
* :func:`index` — ``α(ε)`` per ``φ``, theory against the Monte Carlo index, ``ε_c`` marked.

Only points whose ``done`` flag is set are drawn.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from pipeline import analysis as cube_analysis
from pipeline.errors import ScenarioError
from pipeline.pb import analysis
from pipeline.pb._args import MODELS
from pipeline.pb.matrices import ZERO_TOLERANCE
from pipeline.pb.theory import critical_energy as closed_critical_energy
from pipeline.plots import DEFAULT_BINS, PlotError

__all__ = ["critical_energy", "density", "index", "index_energy"]

# Energies at which a theory curve α(ε) is solved across a panel (plus ε_c itself, where it
# leaves 0): α is smooth past ε_c (∝ (ε − ε_c)^{3/2} there), so 48 straight segments follow it
# to within the line's width, at 3–13 ms a solve.
_CURVE_POINTS = 48
# Ratios at which the closed forms ε_c(φ) are drawn as curves.
_PHI_POINTS = 200
# Room on each side of the data's range of φ (relative) and energy (of the largest).
_MARGIN = 0.05
# The limiting density may rise this far above the tallest bar before it is clipped (a hard edge
# diverges like x^{-1/2}), as in pipeline.plots.spectrum.
_DENSITY_HEADROOM = 2.0
_TOP_MARGIN = 1.1
_STYLE = {"wigner": ("C1", "-"), "product": ("C2", "--")}
_EQUATION = {"wigner": "Wigner (21)", "product": "product (32)"}


# ----------------------------------------------------------------------------------------------
# The network experiment (pbnet cubes)
# ----------------------------------------------------------------------------------------------


def index_energy(ds: xr.Dataset, *, alpha_max: float = 0.1, sigma: float | None = None) -> Figure:
    """The index against the energy of every run, per ``φ``: the runs, the fitted law, the theory.

    One panel per ``φ``.  Kept runs (``converged``) are filled markers; runs that did not reach
    ``J ≤ 10⁻⁶`` are drawn hollow — shown, so that what the paper discards is seen, but never
    fitted.  The law ``α = α₀(ε − ε_c)^{3/2}`` fitted to the kept runs with ``0 < α ≤ alpha_max``
    (:func:`pipeline.pb.analysis.network_summary`) is a solid black line over that range, its
    ``ε_c`` a marker on the axis with its standard error.  The theory's ``α(ε)``
    (:func:`pipeline.pb.analysis.index_curve`) is drawn for both models at ``σ``.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``pbnet`` cube.
    alpha_max : float, default 0.1
        The fit's cut on the index.
    sigma : float, optional
        Mean eigenvalue of ``H₀`` of the theory curves; by default, per ``φ``, the median of the
        kept runs' ``gauss_newton_mean`` (no curve where no run is kept).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per ``φ``; artists with ``gid`` ``"kept"``, ``"unconverged"``, ``"fit"``,
        ``"critical-energy"``, ``"theory-wigner"`` and ``"theory-product"`` where drawn.

    Raises
    ------
    PlotError
        For a bad ``alpha_max`` or ``sigma``, a cube that is not a ``pbnet`` cube (``ds``), or
        one with no run done.
    """
    summary = _summary(ds, alpha_max)
    if sigma is not None and (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float))
        or not (math.isfinite(sigma) and sigma > 0)
    ):
        raise PlotError(f"sigma: must be a finite number > 0 or None, not {sigma!r}")
    energy, alpha, converged, done = (
        np.asarray(ds[name].transpose("phi", "trial").values)
        for name in ("energy", "index", "converged", "done")
    )
    done, converged = done.astype(bool), converged.astype(bool)
    if not done.any():
        raise PlotError("ds: no run of the cube is done")
    phis = summary["phi"].values
    columns = min(3, phis.size)
    rows = math.ceil(phis.size / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for i, phi in enumerate(phis):
        ax, row = axes[i], summary.isel(phi=i)
        kept, dropped = done[i] & converged[i], done[i] & ~converged[i]
        ax.plot(
            energy[i, kept],
            alpha[i, kept],
            "o",
            ms=4,
            color="C0",
            alpha=0.6,
            gid="kept",
            label=f"kept ({int(kept.sum())})",
        )
        if dropped.any():
            ax.plot(
                energy[i, dropped],
                alpha[i, dropped],
                "o",
                ms=4,
                mfc="none",
                color="C0",
                gid="unconverged",
                label=f"J > 1e-6, not fitted ({int(dropped.sum())})",
            )
        shown = energy[i, done[i]]
        top = float(shown.max()) * (1.0 + _MARGIN) if shown.size else 1.0
        _draw_fit(ax, row, alpha_max)
        scale = float(row["sigma"]) if sigma is None else float(sigma)
        if math.isfinite(scale):
            _draw_theory(ax, float(phi), scale, top)
        ax.set_xlim(0.0, top)
        ax.set_ylim(bottom=0.0)
        ax.set_xlabel("energy ε")
        ax.set_ylabel("index α")
        ax.set_title(
            f"φ = {float(phi):.4g}: {int(row['kept'])} of {int(row['runs'])} runs kept", fontsize="medium"
        )
        ax.legend(fontsize="x-small", loc="upper left")
    for ax in axes[phis.size :]:
        ax.set_axis_off()
    return figure


def critical_energy(ds: xr.Dataset, *, alpha_max: float = 0.1) -> Figure:
    """``ε_c(φ)`` of the experiment against the theory, and the minimisers' energies against ``½(1 − φ)²``.

    Left: the ``ε_c`` of the fit at ``p = 3/2`` (± its standard error) per ``φ``; the closed forms
    (21) and (32) at ``σ = 1`` as curves and at the runs' ``σ`` (the median ``gauss_newton_mean``
    of each ``φ``) as hollow markers; the paper's intercepts read off its Fig. 6.  A log scale:
    the product model's ``ε_c`` grows as ``1/φ`` at small ``φ``, all of them vanish as ``(1 − φ)³``;
    what is not positive (a fitted intercept below 0, ``ε_c = 0`` at ``φ >= 1``) is left out.
    Right: every minimiser's energy (``α = 0``, kept runs), their mean ± standard error, and the
    paper's observation ``½(1 − φ)²``.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``pbnet`` cube.
    alpha_max : float, default 0.1
        The fit's cut on the index.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes; artists with ``gid`` ``"data"``, ``"theory-wigner"``, ``"theory-product"``,
        ``"theory-sigma"``, ``"paper"`` (left), ``"minimisers"``, ``"minimiser-mean"`` and
        ``"law"`` (right) where drawn.

    Raises
    ------
    PlotError
        For a bad ``alpha_max`` or a cube that is not a ``pbnet`` cube (``ds``).
    """
    summary = _summary(ds, alpha_max)
    phis = summary["phi"].values.astype(float)
    figure = Figure(figsize=(11.0, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)

    fitted = summary["critical_energy"].values > 0
    left.errorbar(
        phis[fitted],
        summary["critical_energy"].values[fitted],
        yerr=_finite_or_zero(summary["critical_energy_stderr"].values[fitted]),
        fmt="o",
        color="C0",
        capsize=3,
        gid="data",
        label=f"fit α₀(ε − ε_c)^(3/2), 0 < α ≤ {alpha_max:g}",
    )
    grid = _phi_grid(phis)
    for m, marker in zip(MODELS, ("s", "D"), strict=True):
        colour, style = _STYLE[m]
        closed = np.array([closed_critical_energy(p, m) for p in grid])
        left.plot(
            grid, _positive(closed), color=colour, ls=style, gid=f"theory-{m}", label=f"{_EQUATION[m]}, σ = 1"
        )
        at_sigma = summary["theory_critical_energy_sigma"].sel(model=m).values
        left.plot(
            phis,
            _positive(at_sigma),
            marker,
            mfc="none",
            color=colour,
            ls="none",
            gid="theory-sigma",
            label=f"{_EQUATION[m]} at the runs' σ",
        )
    paper = summary["paper_critical_energy"].values
    if np.isfinite(paper).any():
        left.plot(phis, paper, "x", color="k", ms=7, gid="paper", label="paper, Fig. 6")
    left.set_yscale("log")
    # Plain numbers, not the log axis's default mathtext (10^{-2}), which looks up fonts that a
    # headless machine may not have, and logs each miss.
    left.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    left.yaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("φ (parameters / data)")
    left.set_ylabel("critical energy ε_c")
    left.legend(fontsize="x-small", loc="lower left")

    energy, alpha, converged, done = (
        np.asarray(ds[name].transpose("phi", "trial").values)
        for name in ("energy", "index", "converged", "done")
    )
    minimiser = done.astype(bool) & converged.astype(bool) & (alpha == 0.0)
    where = np.nonzero(minimiser)
    right.plot(
        phis[where[0]],
        energy[where],
        ".",
        color="0.6",
        gid="minimisers",
        label=f"minimisers ({int(minimiser.sum())})",
    )
    counted = summary["minimisers"].values > 0
    right.errorbar(
        phis[counted],
        summary["minimiser_energy"].values[counted],
        yerr=_finite_or_zero(summary["minimiser_energy_se"].values[counted]),
        fmt="o",
        color="C0",
        capsize=3,
        gid="minimiser-mean",
        label="mean ± standard error",
    )
    right.plot(grid, 0.5 * (1.0 - grid) ** 2, "k--", gid="law", label="½(1 − φ)²")
    right.set_xlabel("φ (parameters / data)")
    right.set_ylabel("energy ε of the minimisers")
    right.legend(fontsize="x-small", loc="upper right")
    return figure


# ----------------------------------------------------------------------------------------------
# The random-matrix model (pb cubes)
# ----------------------------------------------------------------------------------------------


def density(ds: xr.Dataset, *, phi: float, eps: float, bins: int = DEFAULT_BINS) -> Figure:
    """The Monte Carlo spectrum of one ``(φ, ε)``, pooled over its done trials, against the theory.

    A histogram of the eigenvalues, scaled so that its area is the fraction of them it shows (the
    exact zeros, ``|λ| ≤ N·ε_mach·max|λ|``, left out where the theory has an atom at 0), under
    the limiting density; the support's outer edges dashed; 0 dotted with the index ``α`` (the
    theory's, and the Monte Carlo ``mc_index`` mean ± standard error) in its label; the atom at 0,
    when there is one, with its Monte Carlo share.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``pb`` cube.
    phi, eps : float
        Grid values (matched within a relative tolerance of ``1e-9``).
    bins : int, default 50
        Histogram bins across the view.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; artists with ``gid`` ``"histogram"``, ``"theory-density"``, ``"edges"``,
        ``"zero"`` and ``"atom"`` (where the theory has one).

    Raises
    ------
    PlotError
        For ``phi`` or ``eps`` not on the grid, ``bins < 1``, or a point with no trial done.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise PlotError(f"bins: must be an integer >= 1, not {bins!r}")
    point = ds.sel(phi=_grid_value(ds, "phi", phi), eps=_grid_value(ds, "eps", eps)).load()
    done = np.asarray(point["done"].values, dtype=bool)
    if not done.any():
        raise PlotError(f"phi={float(point['phi']):g}, eps={float(point['eps']):g}: no trial done")
    eigenvalues = np.asarray(point["eigenvalues"].values[done], dtype=float)
    atom = float(point["atom_zero"])
    tolerance = ZERO_TOLERANCE * eigenvalues.shape[1] * np.abs(eigenvalues).max(axis=1, keepdims=True)
    zero = (np.abs(eigenvalues) <= tolerance) if atom > 0 else np.zeros(eigenvalues.shape, dtype=bool)
    x = np.asarray(point["density_x"].values, dtype=float)
    theory = np.asarray(point["density"].values, dtype=float)
    edges = (float(point["edge_left"]), float(point["edge_right"]))
    shown = eigenvalues[~zero]
    span = max(edges[1], float(shown.max(initial=edges[1]))) - min(
        edges[0], float(shown.min(initial=edges[0]))
    )
    view = (
        min(edges[0], float(shown.min(initial=edges[0]))) - _MARGIN * span,
        max(edges[1], float(shown.max(initial=edges[1]))) + _MARGIN * span,
    )

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = figure.add_subplot()
    counts, bin_edges = np.histogram(shown, bins=bins, range=view)
    heights = counts / (eigenvalues.size * np.diff(bin_edges))
    trials = int(done.sum())
    ax.stairs(
        heights,
        bin_edges,
        fill=True,
        color="C0",
        alpha=0.45,
        gid="histogram",
        label=f"Monte Carlo, N = {eigenvalues.shape[1]} ({trials} trial{'s' if trials != 1 else ''})",
    )
    # A hard edge's density is +inf: left out of the line, which then stops just beside it.
    ax.plot(
        x,
        np.where(np.isfinite(theory), theory, np.nan),
        color="C1",
        lw=1.6,
        gid="theory-density",
        label="theory density",
    )
    for i, edge in enumerate(edges):
        ax.axvline(
            edge, color="0.3", ls="--", lw=1, gid="edges", label="support edges" if i == 0 else "_nolegend_"
        )
    mc_index = np.asarray(point["mc_index"].values[done], dtype=float)
    ax.axvline(
        0.0,
        color="k",
        ls=":",
        lw=1,
        gid="zero",
        label=f"α = {float(point['index']):.4g} "
        f"(Monte Carlo {mc_index.mean():.4g} ± {_standard_error(mc_index):.2g})",
    )
    if atom > 0:
        share = float(np.asarray(point["mc_zero_fraction"].values[done]).mean())
        ax.axvline(
            0.0,
            color="C4",
            ls="-.",
            lw=1.5,
            gid="atom",
            label=f"atom at 0: {atom:.3g} (Monte Carlo {share:.3g})",
        )
    tallest = float(heights.max(initial=0.0))
    seen = theory[np.isfinite(theory)]
    peak = (
        min(float(seen.max(initial=0.0)), _DENSITY_HEADROOM * tallest)
        if tallest > 0
        else float(seen.max(initial=0.0))
    )
    ax.set_xlim(*view)
    ax.set_ylim(0.0, _TOP_MARGIN * max(tallest, peak) or 1.0)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density")
    ax.set_title(
        f"{ds.attrs.get('pb_model', '')} model, σ = {ds.attrs.get('sigma', 1.0):g}: "
        f"φ = {float(point['phi']):g}, ε = {float(point['eps']):g}",
        fontsize="medium",
    )
    ax.legend(fontsize="x-small", loc="upper right")
    return figure


def index(ds: xr.Dataset) -> Figure:
    """The index ``α(ε)`` per ``φ``: the theory against the Monte Carlo, the critical energy marked.

    The theory's ``index`` of each cell whose solve converged as a line with points; the Monte
    Carlo ``mc_index`` as its mean over the done trials ± the standard error; ``ε_c`` (the cube's
    ``critical_energy`` coordinate, eqs. 21 and 32) as a dotted vertical line of the same colour.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``pb`` cube.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; artists with ``gid`` ``"theory"``, ``"mc"`` and ``"critical-energy"``.

    Raises
    ------
    PlotError
        For a cube with no trial done (``ds``).
    """
    done = np.asarray(ds["done"].transpose("phi", "eps", "trial").values, dtype=bool)
    if not done.any():
        raise PlotError("ds: no trial of the cube is done")
    eps = np.asarray(ds["eps"].values, dtype=float)
    theory = np.asarray(ds["index"].transpose("phi", "eps").values, dtype=float)
    converged = np.asarray(ds["converged"].transpose("phi", "eps").values, dtype=bool)
    mc = np.asarray(ds["mc_index"].transpose("phi", "eps", "trial").values, dtype=float)
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = figure.add_subplot()
    for i, phi in enumerate(np.asarray(ds["phi"].values, dtype=float)):
        colour = f"C{i % 10}"
        ax.plot(
            eps[converged[i]],
            theory[i, converged[i]],
            ".-",
            color=colour,
            gid="theory",
            label=f"φ = {phi:g}: theory",
        )
        counts = done[i].sum(axis=-1)
        has = counts > 0
        trials = [mc[i, j, done[i, j]] for j in np.flatnonzero(has)]
        errors = _finite_or_zero(np.array([_standard_error(t) for t in trials]))
        ax.errorbar(
            eps[has],
            [t.mean() for t in trials],
            yerr=errors,
            fmt="o",
            mfc="none",
            color=colour,
            capsize=3,
            gid="mc",
            label=f"φ = {phi:g}: Monte Carlo ± SE",
        )
        epsilon_c = float(ds["critical_energy"].values[i])
        ax.axvline(
            epsilon_c, color=colour, ls=":", lw=1, gid="critical-energy", label=f"ε_c = {epsilon_c:.3g}"
        )
    ax.set_xlabel("energy ε")
    ax.set_ylabel("index α (fraction below 0)")
    ax.set_title(
        f"{ds.attrs.get('pb_model', '')} model, σ = {ds.attrs.get('sigma', 1.0):g}, "
        f"N = {ds.attrs.get('N', '?')}",
        fontsize="medium",
    )
    ax.legend(fontsize="x-small", loc="upper left", ncols=2)
    return figure


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _summary(ds: xr.Dataset, alpha_max: float) -> xr.Dataset:
    """:func:`pipeline.pb.analysis.network_summary` without the bootstrap, its errors PlotErrors."""
    try:
        return analysis.network_summary(ds, alpha_max=alpha_max, bootstrap=0)
    except ScenarioError as error:
        raise PlotError(str(error)) from None


def _draw_fit(ax: Axes, row: xr.Dataset, alpha_max: float) -> None:
    epsilon_c, alpha0 = float(row["critical_energy"]), float(row["alpha0"])
    stderr = float(row["critical_energy_stderr"])
    if not (math.isfinite(epsilon_c) and math.isfinite(alpha0)):
        return
    alpha = np.linspace(0.0, alpha_max, _CURVE_POINTS)
    ax.plot(
        epsilon_c + (alpha / alpha0) ** (2 / 3),
        alpha,
        "k-",
        lw=1.4,
        gid="fit",
        label=f"fit α₀(ε − ε_c)^(3/2): ε_c = {epsilon_c:.3f}"
        + (f" ± {stderr:.3f}" if math.isfinite(stderr) else ""),
    )
    ax.errorbar(
        [epsilon_c],
        [0.0],
        xerr=[stderr if math.isfinite(stderr) else 0.0],
        fmt="|",
        color="k",
        ms=10,
        capsize=3,
        gid="critical-energy",
    )


def _draw_theory(ax: Axes, phi: float, sigma: float, top: float) -> None:
    for m in MODELS:
        epsilon_c = closed_critical_energy(phi, m, sigma=sigma)
        eps = np.union1d(np.linspace(0.0, top, _CURVE_POINTS), [epsilon_c] if epsilon_c < top else [])
        colour, style = _STYLE[m]
        ax.plot(
            eps,
            analysis.index_curve(phi, eps, m, sigma=sigma),
            color=colour,
            ls=style,
            gid=f"theory-{m}",
            label=f"theory {m}, σ = {sigma:.3g} (ε_c = {epsilon_c:.3g})",
        )


def _phi_grid(phis: np.ndarray) -> np.ndarray:
    """Ratios for the closed-form curves: from below the smallest ``φ`` to halfway from the largest to 1."""
    low, high = float(phis.min()), float(phis.max())
    if high < 1.0:
        high += 0.5 * (1.0 - high)
    return np.linspace(low * (1.0 - 4 * _MARGIN), high, _PHI_POINTS)


def _positive(values: np.ndarray) -> np.ndarray:
    """``values`` with the non-positive ones NaN: a log axis cannot show them (``ε_c = 0`` at ``φ >= 1``)."""
    return np.where(values > 0, values, np.nan)


def _grid_value(ds: xr.Dataset, dim: str, value: float) -> float:
    """:func:`pipeline.analysis.grid_value`, its error a :class:`PlotError` naming ``dim``."""
    try:
        return cube_analysis.grid_value(ds, dim, value)
    except ValueError as error:
        raise PlotError(str(error)) from None


def _standard_error(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) / math.sqrt(values.size) if values.size > 1 else math.nan


def _finite_or_zero(values: np.ndarray) -> np.ndarray:
    """Error bars of unknown (NaN) size drawn as none: matplotlib refuses NaN error bars."""
    return np.where(np.isfinite(values), values, 0.0)
