"""Figures of a cube: phase diagrams, spectra with the theory on top, alignment curves.

Every function takes a cube (the :class:`xarray.Dataset` of :func:`pipeline.open_cube`) and returns
a :class:`matplotlib.figure.Figure` built directly, never through ``pyplot``: a figure then belongs
to no global state, so figures can be drawn in threads, in Dask workers and without a display, and
nothing is left open.  :func:`save` writes one as PNG or PDF.

* :func:`phase_diagram`: per loss, a heat map over ``(c, signal)`` of the Monte Carlo alignment of
  the extreme eigenvector with the signal vector (or of the spike's gap beyond the bulk edge), with
  the theory and Monte Carlo phase boundaries on top;
* :func:`spectrum`: the Monte Carlo spectrum of one point, pooled over its trials (a histogram of
  the eigenvalues of a dense cube, the mean quadrature density ``mc_density`` of a lanczos cube),
  against the limiting density, its edges, spikes and atom, optionally with a fitted
  Marchenko–Pastur law;
* :func:`alignment`: the alignment along the signal axis at one ``(loss, c)``, Monte Carlo against
  theory, with the phase boundary.

Only points whose ``done`` flag is set are used.  The numbers come from :mod:`pipeline.analysis`;
this module only draws them.  Cubes of either Monte Carlo method (``montecarlo.method``: ``dense``,
``lanczos``) are drawn alike: the analysis reads their extreme eigenvalues
(:func:`pipeline.analysis.extreme_eigenvalue`) and spectral measures
(:func:`pipeline.analysis.mc_distribution`) from whichever variables the cube has; only the
spectrum's Monte Carlo artist differs (histogram or quadrature density).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from pipeline import analysis
from pipeline.errors import HessweepError
from pipeline.scenario import TARGETS

__all__ = [
    "DEFAULT_BINS",
    "SUFFIXES",
    "PlotError",
    "alignment",
    "phase_diagram",
    "save",
    "signal_label",
    "spectrum",
]

#: File types that :func:`save` writes, by suffix.
SUFFIXES = (".png", ".pdf")
#: Values of ``var`` in :func:`phase_diagram`.
PHASE_VARIABLES = ("align", "gap")
#: Values of ``side``: ``"auto"`` picks the side where the spike appears.
SIDES = ("auto", "left", "right")
#: Histogram bins of :func:`spectrum` across its view: about 10 eigenvalues a bin at p = 200 and
#: 3 trials, enough to follow the density's shape without drowning it in noise.
DEFAULT_BINS = 50

# A spectrum's view holds all but this much of each tail of the theory's bulk and of the Monte
# Carlo eigenvalues: an unbounded spectrum (exponential loss) has outliers hundreds of bulk widths
# out, which would squeeze the bulk into one bin.
_VIEW_TAIL = 0.002
# Spikes and eigenvalues up to this many view widths beyond the view are still shown (a spike
# just outside the bulk is the point of the figure); farther ones are counted in the title.
_VIEW_REACH = 1.0
# Blank space on each side of a spectrum's view, as a fraction of its width.
_VIEW_MARGIN = 0.04
# Monte Carlo eigenvalues within this fraction of max|λ| of 0 are the atom at 0 (H has rank ≤ n):
# far above eigvalsh's rounding (~p·eps·max|λ|), far below any bulk edge.
_ZERO_RTOL = 1e-8
# Abscissae of a fitted Marchenko–Pastur density across the view.
_CURVE_POINTS = 400
# An axis is drawn on a log scale when its values are geometrically, not arithmetically, spaced
# (to this relative tolerance), or, when irregular, span at least this ratio.
_SPACING_RTOL = 1e-6
_LOG_SPAN = 10.0
# Half-width of the cell of an axis with a single value, relative to the value (absolute about 0).
_LONE_CELL_HALF_WIDTH = 0.1
# The limiting density may rise this far above the tallest bar before it is clipped: a hard edge
# (c = 1) diverges like x^(-1/2) at 0, and an axis reaching its peak would flatten the rest.
_DENSITY_HEADROOM = 2.0
# Space above the tallest thing on a density axis.
_TOP_MARGIN = 1.1
# A log-scaled c axis is labelled at the grid values up to this many of them.
_MAX_GRID_TICKS = 8
_DPI = 150

_SIGNAL_LABELS = {
    "mu.norm": "‖μ‖",
    "w_star.norm": "‖w*‖",
    "w.norm": "‖w‖",
    "mu.angle": "∠(μ, w*) [°]",
    "w.angle": "∠(w, w*) [°]",
}
_TARGET_SYMBOLS = {"mu": "μ", "w_star": "w*", "w": "w"}
_EIGENVECTOR = {"right": "top", "left": "bottom"}
_SIDE_STYLE = {"right": "-", "left": "--"}


class PlotError(HessweepError, ValueError):
    """A figure that cannot be drawn as asked: an unknown loss or value, nothing done, a bad suffix."""


# ----------------------------------------------------------------------------------------------
# Public figures
# ----------------------------------------------------------------------------------------------


def phase_diagram(
    ds: xr.Dataset, *, loss: str | None = None, var: str = "align", side: str = "auto"
) -> Figure:
    """Heat maps over ``(c, signal)`` with the theory and Monte Carlo phase boundaries on top.

    One panel per loss.  The colour is, per ``(c, signal)``, the mean over the done trials of
    :func:`pipeline.analysis.extreme_alignment` (``var="align"``: cos² of the most extreme
    eigenvector with the signal vector, :func:`pipeline.analysis.signal_vector`) or of
    :func:`pipeline.analysis.extreme_gap` (``var="gap"``: the extreme eigenvalue's distance beyond
    the theory edge).  The boundaries of :func:`pipeline.analysis.phase_boundary` are drawn for
    each side that has a transition: theory as a line over ``c``, Monte Carlo as points with
    their ``uncertainty`` as error bars.  A loss whose law of g is unbounded has no spikes in
    theory (``spikes_defined`` is false); its panel's title says so.

    Parameters
    ----------
    ds : xarray.Dataset
        A cube, from :func:`pipeline.open_cube`.
    loss : str, optional
        Draw only this loss; by default every loss of the cube, one panel each.
    var : {"align", "gap"}, default "align"
        The coloured quantity.
    side : {"auto", "left", "right"}, default "auto"
        The edge of the spectrum: ``"right"`` (top eigenvalue), ``"left"`` (bottom).  ``"auto"``
        colours, per loss, the side where the theory (else the Monte Carlo) sees a transition,
        the right side if it sees both or none, and draws the boundaries of both sides.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per loss, plus one colour bar; ``c`` on a log scale when the grid is
        log-spaced.  Boundary artists carry the ``gid`` ``"boundary-theory-<side>"`` and
        ``"boundary-mc-<side>"``, the heat maps ``"heatmap"``.

    Raises
    ------
    PlotError
        For an unknown ``loss``, ``var`` or ``side``.

    See Also
    --------
    pipeline.analysis.phase_boundary, pipeline.analysis.extreme_alignment
    """
    _check_choice("var", var, PHASE_VARIABLES)
    _check_choice("side", side, SIDES)
    losses = [_loss(ds, loss)] if loss is not None else _labels(ds, "loss")
    ds = _per_point_loaded(ds)
    target = analysis.signal_vector(ds)
    label = signal_label(ds)
    boundary_sides = ("right", "left") if side == "auto" else (side,)
    # The coloured quantity is computed once per side for the whole cube (it is shared by losses).
    colour_cache: dict[str, xr.DataArray] = {}

    figure = Figure(figsize=(0.6 + 4.2 * len(losses), 3.8), layout="constrained")
    axes = figure.subplots(1, len(losses), squeeze=False)[0]
    limits = (0.0, 1.0) if var == "align" else None
    meshes = []
    for ax, name in zip(axes, losses, strict=True):
        boundaries = {
            (source, s): _boundary(ds, name, source, s, target)
            for s in boundary_sides
            for source in ("theory", "mc")
        }
        colour_side = side if side != "auto" else _transition_side(boundaries)
        if colour_side not in colour_cache:
            colour_cache[colour_side] = _trial_mean(_phase_variable(ds, var, target, colour_side))
        values = colour_cache[colour_side].sel(loss=name).sortby("c").sortby("signal")
        meshes.append(_heat_map(ax, values))
        for (source, s), boundary in boundaries.items():
            _draw_boundary(ax, boundary, source, s)
        ax.set_xlabel("c = p/n")
        ax.set_ylabel(label)
        ax.set_title(_phase_title(ds, name, var, colour_side), fontsize="medium")
        _legend(ax, fontsize="x-small", loc="upper right")
    limits = limits or _symmetric_limits([mesh.get_array() for mesh in meshes])
    for mesh in meshes:
        mesh.set_clim(*limits)
    figure.colorbar(meshes[0], ax=list(axes), label=_colour_label(var, target))
    return figure


def spectrum(
    ds: xr.Dataset,
    *,
    c: float,
    loss: str,
    signal: float,
    mp_fit: bool = False,
    bins: int = DEFAULT_BINS,
) -> Figure:
    """The Monte Carlo spectrum of one point against the limiting spectrum.

    A dense cube: a histogram of the eigenvalues pooled over the done trials of
    ``(c, loss, signal)``, scaled so that its area is the fraction of them it shows.  A lanczos
    cube (a quadrature of a few nodes per bulk width, too coarse for a histogram): the mean over
    the done trials of its smoothed quadrature density ``mc_density``, a filled line on the
    theory's abscissae.  Either way the limiting density is drawn on top (both have area
    ``1 − atom_zero``: the atom is left out); the bulk edges as dashed vertical lines; the
    predicted spikes as markers on the axis; the atom at 0, when ``atom_zero > 0``, as a dotted
    line, its legend giving the Monte Carlo mass at 0 (the numerically zero eigenvalues, or the
    quadrature weight at 0).

    The view is chosen so that the bulk is visible: it holds all but a tail of 0.2 % on each
    side of the theory's bulk and of the Monte Carlo measure (:func:`pipeline.analysis.mc_distribution`),
    the finite edges, and the spikes and eigenvalues (quadrature nodes) within one view width of
    that; the title says how many eigenvalues (how much quadrature weight) lie outside.

    Parameters
    ----------
    ds : xarray.Dataset
        A cube, from :func:`pipeline.open_cube`.
    c, signal : float
        Grid values (matched within a relative tolerance of ``1e-9``, so ``0.3`` finds
        ``0.30000000000000004``).
    loss : str
        A loss of the cube.
    mp_fit : bool, default False
        Also draw the best-fitting shifted and scaled Marchenko–Pastur law
        (:func:`pipeline.analysis.marchenko_pastur_fit`, fitted to the quadrature's weights in a
        lanczos cube), its KS distance in the legend.
    bins : int, default 50
        Histogram bins across the view (a dense cube's; a lanczos cube draws no histogram).

    Returns
    -------
    matplotlib.figure.Figure
        One axes; artists with ``gid`` ``"histogram"`` (dense) or ``"mc-density"`` (lanczos),
        ``"theory-density"``, ``"edges"``, ``"spikes"``, ``"atom"`` and ``"mp-fit"`` where drawn.

    Raises
    ------
    PlotError
        For a value not on the grid, ``bins < 1``, or a point with no trial done.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise PlotError(f"bins: must be an integer >= 1, not {bins!r}")
    point = _point(ds, c=c, loss=loss, signal=signal)
    c_value = float(point["c"])
    done = np.asarray(point["done"].values, dtype=bool)
    if not done.any():
        raise PlotError(f"c={c_value:g}, loss={loss}, signal={float(point['signal']):g}: no trial done")
    measure = analysis.mc_distribution(point, ds)
    density_x = np.asarray(point["density_x"].values, dtype=float)
    density = np.asarray(point["density"].values, dtype=float)
    atom = float(point["atom_zero"])
    edges = (float(point["edge_left"]), float(point["edge_right"]))
    spikes = np.asarray(point["spike"].values, dtype=float)
    spikes = spikes[np.isfinite(spikes)]

    view = _spectrum_view(measure, density_x, density, edges, spikes, atom)
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = figure.add_subplot()
    trials = int(done.sum())
    outside = float(measure.weights[(measure.nodes < view[0]) | (measure.nodes > view[1])].sum())
    if measure.quadrature:
        # A quadrature has a few nodes per bulk width: its smoothed density, not a histogram.
        tallest = _quadrature_density(ax, density_x, point["mc_density"].values[done], trials)
        share = float(measure.weights[measure.nodes == 0.0].sum())
        what = f"quadrature of {measure.nodes.size} nodes from {trials} trials; weight {outside:.2g}"
    else:
        eigenvalues = measure.nodes
        zero = _numerically_zero(eigenvalues) if atom > 0 else np.zeros(eigenvalues.size, dtype=bool)
        tallest = _histogram(ax, eigenvalues[~zero], eigenvalues.size, view, bins, trials)
        share = zero.sum() / eigenvalues.size
        beyond = int(np.count_nonzero((eigenvalues < view[0]) | (eigenvalues > view[1])))
        what = f"{eigenvalues.size} eigenvalues from {trials} trials; {beyond}"
    ax.plot(density_x, density, color="C1", lw=1.6, label="theory density", gid="theory-density")
    _draw_edges(ax, edges)
    _draw_spikes(ax, spikes, view)
    if atom > 0:
        ax.axvline(
            0.0, color="C4", ls=":", lw=1.5, gid="atom", label=f"atom at 0: {atom:.3g} (MC {share:.3g})"
        )
    if mp_fit:
        _draw_marchenko_pastur(ax, measure, c_value, view)
    ax.set_xlim(*view)
    ax.set_ylim(0.0, _density_top(tallest, density_x, density, view))
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density")
    ax.set_title(
        f"{loss}, c = {c_value:g}, {signal_label(ds)} = {float(point['signal']):g}\n"
        f"{what} outside [{view[0]:.3g}, {view[1]:.3g}]",
        fontsize="medium",
    )
    _legend(ax, fontsize="small", loc="upper right")
    return figure


def alignment(
    ds: xr.Dataset, *, loss: str, c: float, target: str | None = None, side: str = "auto"
) -> Figure:
    """The alignment of the extreme eigenvector along the signal axis: Monte Carlo and theory.

    Draws :func:`pipeline.analysis.alignment_curve`: the Monte Carlo mean over the done trials
    with the spread (standard deviation) over trials as error bars, the theory curve, and the
    phase boundary at this ``c`` (:func:`pipeline.analysis.phase_boundary`): theory as a dashed
    vertical line, Monte Carlo as a dotted one with its uncertainty shaded.

    Parameters
    ----------
    ds : xarray.Dataset
        A cube, from :func:`pipeline.open_cube`.
    loss : str
        A loss of the cube.
    c : float
        A grid value (matched within a relative tolerance of ``1e-9``).
    target : {"mu", "w_star", "w"}, optional
        The vector; by default the one the sweep's signal acts on
        (:func:`pipeline.analysis.signal_vector`).
    side : {"auto", "left", "right"}, default "auto"
        The extreme eigenvector: top (``"right"``), bottom (``"left"``), or the side where the
        spike appears (``"auto"``, resolved by :func:`pipeline.analysis.alignment_curve`).

    Returns
    -------
    matplotlib.figure.Figure
        One axes; artists with ``gid`` ``"mc"``, ``"theory"``, ``"boundary-theory"`` and
        ``"boundary-mc"`` where drawn.

    Raises
    ------
    PlotError
        For an unknown loss, target or side, or a ``c`` not on the grid.
    """
    _check_choice("side", side, SIDES)
    if target is None:
        target = analysis.signal_vector(ds)
    _check_choice("target", target, TARGETS)
    name = _loss(ds, loss)
    c_value = _grid_value(ds, "c", c)
    ds = _per_point_loaded(ds)
    curve = analysis.alignment_curve(ds, name, c_value, target=target, side=side).compute()
    resolved = str(curve.attrs["side"])
    signal = np.asarray(curve["signal"].values, dtype=float)
    order = np.argsort(signal)

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = figure.add_subplot()
    ax.errorbar(
        signal[order],
        np.asarray(curve["mc_mean"].values)[order],
        yerr=_finite_or_zero(np.asarray(curve["mc_std"].values)[order]),
        fmt="o",
        capsize=3,
        color="C0",
        label="Monte Carlo: mean ± std over trials",
        gid="mc",
    )
    label = signal_label(ds)
    boundaries = {
        source: _boundary(ds, name, source, resolved, target).sel(c=c_value) for source in ("theory", "mc")
    }
    ax.plot(
        *_theory_curve(signal[order], np.asarray(curve["theory"].values)[order], float(boundaries["theory"])),
        "-",
        color="C1",
        label="theory",
        gid="theory",
    )
    for source, boundary in boundaries.items():
        _draw_boundary_at(ax, boundary, source, label)
    symbol = _TARGET_SYMBOLS[target]
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(label)
    ax.set_ylabel(f"cos²({_EIGENVECTOR[resolved]} eigenvector, {symbol})")
    title = f"{name}, c = {c_value:g}"
    if not _spikes_defined(ds, name):
        title += ": no spikes in theory (law of g unbounded)"
    ax.set_title(title, fontsize="medium")
    _legend(ax, fontsize="small", loc="best")
    return figure


def save(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write a figure as PNG or PDF, chosen by the suffix of ``path``.

    The image is rendered in memory first: a figure that fails to render creates no file.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        From one of this module's functions (or any figure).
    path : str or path-like
        Ends in ``.png`` or ``.pdf`` (any case); its directory must exist.

    Raises
    ------
    PlotError
        For another suffix; nothing is written.
    OSError
        If the file cannot be written (a partial file is removed).

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> save(Figure(), "figure.svg")
    Traceback (most recent call last):
    ...
    pipeline.plots.PlotError: figure.svg: cannot write '.svg' files (use .png or .pdf)
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in SUFFIXES:
        shown = f"{suffix!r} files" if suffix else "files without a suffix"
        raise PlotError(f"{os.fspath(path)}: cannot write {shown} (use {' or '.join(SUFFIXES)})")
    buffer = io.BytesIO()
    # A fixed (absent) creation date: the same figure gives the same PDF bytes.
    metadata = {"CreationDate": None} if suffix == ".pdf" else None
    fig.savefig(buffer, format=suffix[1:], dpi=_DPI, metadata=metadata)
    existed = target.exists()
    try:
        target.write_bytes(buffer.getvalue())
    except OSError:
        if not existed:
            target.unlink(missing_ok=True)
        raise


def signal_label(ds: xr.Dataset) -> str:
    """The axis label of the cube's signal, from the sweep in its attributes (``"mu.norm"`` → ``‖μ‖``).

    Examples
    --------
    >>> import xarray as xr
    >>> signal_label(xr.Dataset(attrs={"spec": '{"signal": "w_star.norm"}'}))
    '‖w*‖'
    """
    name = str(json.loads(ds.attrs["spec"])["signal"])
    return _SIGNAL_LABELS.get(name, name)


# ----------------------------------------------------------------------------------------------
# Selections
# ----------------------------------------------------------------------------------------------


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise PlotError(f"{name}: must be one of {', '.join(choices)}, not {value!r}")


def _labels(ds: xr.Dataset, dim: str) -> list[str]:
    return [str(label) for label in np.asarray(ds[dim].values).tolist()]


def _loss(ds: xr.Dataset, loss: str) -> str:
    losses = _labels(ds, "loss")
    if loss not in losses:
        raise PlotError(f"loss: {loss!r} is not a loss of the cube (losses: {', '.join(losses)})")
    return loss


def _grid_value(ds: xr.Dataset, dim: str, value: float) -> float:
    """:func:`pipeline.analysis.grid_value`, its error a :class:`PlotError`."""
    try:
        return analysis.grid_value(ds, dim, value)
    except ValueError as error:
        raise PlotError(str(error)) from None


def _point(ds: xr.Dataset, *, c: float, loss: str, signal: float) -> xr.Dataset:
    """One ``(c, loss, signal)`` point of the cube, loaded: every variable (whichever Monte Carlo
    method made the cube), a few kB to a few MB."""
    at = {"c": _grid_value(ds, "c", c), "loss": _loss(ds, loss), "signal": _grid_value(ds, "signal", signal)}
    return ds.sel(at).load()


def _per_point_loaded(ds: xr.Dataset) -> xr.Dataset:
    """The cube with its per-point variables in memory; the spectra (``eig``, ``node``, ``x``) stay lazy.

    The per-point variables are a few kB even for large sweeps, and the analysis reads them many
    times (per loss, side and source): loaded once here rather than computed from Zarr each time.
    A new dataset: the caller's is left as it was.
    """
    spectra = ("eig", "node", "x")
    small = [str(name) for name, v in ds.data_vars.items() if not any(d in v.dims for d in spectra)]
    return ds.assign({name: ds[name].compute() for name in small})


def _spikes_defined(ds: xr.Dataset, loss: str) -> bool:
    """Whether the theory reports spikes for ``loss`` at any point with a trial done."""
    at = ds[["spikes_defined", "done"]].sel(loss=loss)
    return bool((at["spikes_defined"] & at["done"].any("trial")).any())


# ----------------------------------------------------------------------------------------------
# Phase diagram
# ----------------------------------------------------------------------------------------------


def _boundary(ds: xr.Dataset, loss: str, source: str, side: str, target: str) -> xr.DataArray:
    return analysis.phase_boundary(ds, loss, source=source, side=side, target=target).compute()


def _transition_side(boundaries: dict[tuple[str, str], xr.DataArray]) -> str:
    """The side whose boundary the theory, else the Monte Carlo, finds; right if both or neither."""
    for source in ("theory", "mc"):
        found = {s for (where, s), b in boundaries.items() if where == source and np.isfinite(b.values).any()}
        if found:
            return "right" if "right" in found else "left"
    return "right"


def _phase_variable(ds: xr.Dataset, var: str, target: str, side: str) -> xr.DataArray:
    if var == "align":
        return analysis.extreme_alignment(ds, target, side)
    return analysis.extreme_gap(ds, side)


def _trial_mean(values: xr.DataArray) -> xr.DataArray:
    # Points not done are NaN: skipping them averages over the done trials.
    return values.mean("trial", skipna=True).compute()


def _heat_map(ax: Axes, values: xr.DataArray) -> Any:
    c = np.asarray(values["c"].values, dtype=float)
    signal = np.asarray(values["signal"].values, dtype=float)
    log_c = _is_log_spaced(c)
    colour = np.ma.masked_invalid(np.asarray(values.transpose("signal", "c").values, dtype=float))
    mesh = ax.pcolormesh(
        _cell_edges(c, log=log_c),
        _cell_edges(signal, log=False),
        colour,
        cmap="viridis",
        shading="flat",
        gid="heatmap",
    )
    if log_c:
        _log_axis_at(ax, c)
    return mesh


def _log_axis_at(ax: Axes, values: np.ndarray) -> None:
    """A log-scaled x axis labelled with plain numbers, at the grid values when they are few."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    if values.size <= _MAX_GRID_TICKS:
        ax.set_xticks(values, [f"{v:g}" for v in values])
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _is_log_spaced(values: np.ndarray) -> bool:
    """Whether an axis reads best on a log scale (see ``_SPACING_RTOL`` and ``_LOG_SPAN``)."""
    if values.size < 2 or np.any(values <= 0):
        return False
    if values.size >= 3:
        if _uniform(np.diff(values)):
            return False
        if _uniform(np.diff(np.log(values))):
            return True
    return bool(values.max() / values.min() >= _LOG_SPAN)


def _uniform(steps: np.ndarray) -> bool:
    return bool(np.allclose(steps, steps[0], rtol=_SPACING_RTOL, atol=0.0))


def _cell_edges(values: np.ndarray, *, log: bool) -> np.ndarray:
    """Cell boundaries at the mid-points between sorted values (geometric on a log scale)."""
    if values.size == 1:
        half = _LONE_CELL_HALF_WIDTH * abs(values[0]) or _LONE_CELL_HALF_WIDTH
        if log:
            return values[0] * np.array([1 - _LONE_CELL_HALF_WIDTH, 1 + _LONE_CELL_HALF_WIDTH])
        return values[0] + np.array([-half, half])
    at = np.log(values) if log else values
    middle = (at[1:] + at[:-1]) / 2
    edges = np.concatenate([[2 * at[0] - middle[0]], middle, [2 * at[-1] - middle[-1]]])
    return np.exp(edges) if log else edges


def _draw_boundary(ax: Axes, boundary: xr.DataArray, source: str, side: str) -> None:
    """A boundary over c: theory as a line, Monte Carlo as points with error bars; nothing if empty."""
    boundary = boundary.sortby("c")
    c = np.asarray(boundary["c"].values, dtype=float)
    value = np.asarray(boundary.values, dtype=float)
    found = np.isfinite(value)
    if not found.any():
        return
    where = f"{_EIGENVECTOR[side]} spike"
    gid = f"boundary-{source}-{side}"
    if source == "theory":
        ax.plot(
            c, value, _SIDE_STYLE[side], marker=".", color="tab:red", lw=2, gid=gid, label=f"theory ({where})"
        )
        return
    spread = _finite_or_zero(np.asarray(boundary["uncertainty"].values, dtype=float))
    ax.errorbar(
        c[found],
        value[found],
        yerr=spread[found],
        fmt="o",
        ms=4,
        capsize=3,
        color="white",
        mec="black",
        ecolor="black",
        gid=gid,
        label=f"Monte Carlo ({where})",
    )


def _phase_title(ds: xr.Dataset, loss: str, var: str, side: str) -> str:
    what = f"{_EIGENVECTOR[side]} eigenvector" if var == "align" else f"{side} gap"
    title = f"{loss}: {what}"
    if not _spikes_defined(ds, loss):
        title += "\nno spikes in theory (law of g unbounded)"
    return title


def _colour_label(var: str, target: str) -> str:
    if var == "align":
        return f"cos²(extreme eigenvector, {_TARGET_SYMBOLS[target]}), mean over trials"
    return "extreme eigenvalue beyond the bulk edge, mean over trials"


def _symmetric_limits(arrays: Sequence[Any]) -> tuple[float, float]:
    """Colour limits ±max|value| over every panel, so that 0 (at the edge) is the middle colour."""
    finite = [np.abs(np.ma.compressed(np.ma.masked_invalid(a))) for a in arrays]
    largest = max((float(f.max()) for f in finite if f.size), default=0.0)
    largest = largest or 1.0
    return -largest, largest


# ----------------------------------------------------------------------------------------------
# Spectrum
# ----------------------------------------------------------------------------------------------


def _spectrum_view(
    measure: analysis.SpectralMeasure,
    density_x: np.ndarray,
    density: np.ndarray,
    edges: tuple[float, float],
    spikes: np.ndarray,
    atom: float,
) -> tuple[float, float]:
    """The x range of a spectrum: the bulk and what lies near it (see ``_VIEW_TAIL``, ``_VIEW_REACH``)."""
    quantiles = measure.quantile([_VIEW_TAIL, 1 - _VIEW_TAIL])
    core = [float(quantiles[0]), float(quantiles[1])]
    bulk = _bulk_quantiles(density_x, density)
    finite_edges = [edge for edge in edges if np.isfinite(edge)]
    core = [min([core[0], *bulk[:1], *finite_edges]), max([core[1], *bulk[1:], *finite_edges])]
    if atom > 0:
        core = [min(core[0], 0.0), max(core[1], 0.0)]
    width = core[1] - core[0] or max(abs(core[0]), 1.0)
    reach = (core[0] - _VIEW_REACH * width, core[1] + _VIEW_REACH * width)
    near = np.concatenate([measure.nodes, spikes])
    near = near[(near >= reach[0]) & (near <= reach[1])]
    low, high = float(near.min(initial=core[0])), float(near.max(initial=core[1]))
    margin = _VIEW_MARGIN * (high - low)
    return low - margin, high + margin


def _bulk_quantiles(x: np.ndarray, density: np.ndarray) -> list[float]:
    """The ``_VIEW_TAIL`` and ``1 − _VIEW_TAIL`` quantiles of the limiting density (atom left out)."""
    keep = np.isfinite(x) & np.isfinite(density)
    x, density = x[keep], density[keep]
    if x.size < 2:
        return []
    mass = np.concatenate([[0.0], np.cumsum(np.diff(x) * (density[1:] + density[:-1]) / 2)])
    if mass[-1] <= 0:
        return []
    return [float(v) for v in np.interp([_VIEW_TAIL, 1 - _VIEW_TAIL], mass / mass[-1], x)]


def _numerically_zero(eigenvalues: np.ndarray) -> np.ndarray:
    scale = np.abs(eigenvalues).max(initial=0.0)
    return np.abs(eigenvalues) <= _ZERO_RTOL * scale


def _histogram(
    ax: Axes, shown: np.ndarray, total: int, view: tuple[float, float], bins: int, trials: int
) -> float:
    """Bars scaled by the count of *all* eigenvalues (their area is the fraction inside the view);
    returns the tallest bar's height."""
    counts, edges = np.histogram(shown, bins=bins, range=view)
    heights = counts / (total * np.diff(edges))
    tallest = float(heights.max(initial=0.0))
    ax.stairs(
        heights,
        edges,
        fill=True,
        color="C0",
        alpha=0.45,
        gid="histogram",
        label=f"Monte Carlo ({trials} trial{'s' if trials != 1 else ''})",
    )
    return tallest


def _quadrature_density(ax: Axes, x: np.ndarray, densities: np.ndarray, trials: int) -> float:
    """The mean over the done trials of a lanczos cube's ``mc_density`` (rows), as a line on the
    theory's abscissae; returns its height in the view's terms (its maximum)."""
    finite = np.all(np.isfinite(densities), axis=-1)
    if not finite.any():
        return 0.0
    mean = densities[finite].mean(axis=0)
    ax.plot(
        x,
        mean,
        color="C0",
        lw=1.4,
        gid="mc-density",
        label=f"Monte Carlo, Lanczos quadrature ({trials} trial{'s' if trials != 1 else ''})",
    )
    ax.fill_between(x, mean, color="C0", alpha=0.25, lw=0)
    return float(np.max(mean, initial=0.0))


def _density_top(tallest: float, x: np.ndarray, density: np.ndarray, view: tuple[float, float]) -> float:
    """The top of the density axis: the Monte Carlo's (bars or curve), and the theory up to
    ``_DENSITY_HEADROOM`` times it."""
    seen = density[(x >= view[0]) & (x <= view[1]) & np.isfinite(density)]
    theory = float(seen.max(initial=0.0))
    if tallest > 0:
        theory = min(theory, _DENSITY_HEADROOM * tallest)
    return _TOP_MARGIN * max(tallest, theory) or 1.0


def _draw_edges(ax: Axes, edges: tuple[float, float]) -> None:
    finite = [edge for edge in edges if np.isfinite(edge)]
    label = "bulk edges"
    if len(finite) < 2:
        unbounded = [
            name for name, edge in zip(("left: −∞", "right: +∞"), edges, strict=True) if not np.isfinite(edge)
        ]
        label = f"bulk edge ({', '.join(unbounded)})"
    for i, edge in enumerate(finite):
        ax.axvline(edge, color="0.3", ls="--", lw=1, gid="edges", label=label if i == 0 else "_nolegend_")


def _draw_spikes(ax: Axes, spikes: np.ndarray, view: tuple[float, float]) -> None:
    if spikes.size == 0:
        return
    inside = spikes[(spikes >= view[0]) & (spikes <= view[1])]
    values = ", ".join(f"{s:.3g}" for s in spikes)
    beyond = spikes.size - inside.size
    label = f"theory spikes: {values}" + (f" ({beyond} beyond the view)" if beyond else "")
    # y in axes coordinates: the markers sit on the x axis whatever the density's scale.
    ax.plot(
        inside,
        np.zeros(inside.size),
        "^",
        ms=9,
        color="C3",
        transform=ax.get_xaxis_transform(),
        clip_on=False,
        gid="spikes",
        label=label,
    )


def _draw_marchenko_pastur(
    ax: Axes, measure: analysis.SpectralMeasure, c: float, view: tuple[float, float]
) -> None:
    weights = measure.weights if measure.quadrature else None
    fit = analysis.marchenko_pastur_fit(measure.nodes, c, weights=weights)
    x = np.linspace(view[0], view[1], _CURVE_POINTS)
    y = analysis.marchenko_pastur_density(x, c, shift=fit.shift, scale=fit.scale)
    ax.plot(
        x,
        y,
        color="C2",
        lw=1.4,
        ls="-.",
        gid="mp-fit",
        label=f"Marchenko–Pastur fit (shift {fit.shift:.3g}, scale {fit.scale:.3g}), KS = {fit.ks:.3f}",
    )


# ----------------------------------------------------------------------------------------------
# Alignment
# ----------------------------------------------------------------------------------------------


def _theory_curve(signal: np.ndarray, theory: np.ndarray, boundary: float) -> tuple[np.ndarray, np.ndarray]:
    """The theory's alignment with the point ``(boundary, 0)`` added: it leaves 0 there, not at the
    grid value before (a straight line between grid values would start it early)."""
    if not np.isfinite(boundary) or not signal[0] < boundary < signal[-1]:
        return signal, theory
    at = int(np.searchsorted(signal, boundary))
    return np.insert(signal, at, boundary), np.insert(theory, at, 0.0)


def _draw_boundary_at(ax: Axes, boundary: xr.DataArray, source: str, label: str) -> None:
    value = float(boundary)
    if not np.isfinite(value):
        return
    if source == "theory":
        ax.axvline(
            value, color="C3", ls="--", gid="boundary-theory", label=f"theory boundary {label} = {value:.3g}"
        )
        return
    spread = float(boundary["uncertainty"])
    text = f"Monte Carlo boundary {label} = {value:.3g}"
    if np.isfinite(spread) and spread > 0:
        ax.axvspan(value - spread, value + spread, color="0.5", alpha=0.15, lw=0)
        text += f" ± {spread:.2g}"
    ax.axvline(value, color="0.3", ls=":", gid="boundary-mc", label=text)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _finite_or_zero(values: np.ndarray) -> np.ndarray:
    """Error bars with unknown (NaN) sizes drawn as none: matplotlib refuses NaN error bars."""
    return np.where(np.isfinite(values), values, 0.0)


def _legend(ax: Axes, **options: Any) -> None:
    # matplotlib warns when a legend has nothing to show (and warnings are errors in the tests).
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)
