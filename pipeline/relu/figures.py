"""Figures of a relu cube: the Hessian spectra of a family of critical points as ``k`` grows.

Like :mod:`pipeline.plots`, every function returns a :class:`matplotlib.figure.Figure` built
directly, never through ``pyplot`` (no global state, drawable without a display), and
:func:`pipeline.plots.save` writes it.  The numbers come from :mod:`pipeline.relu.analysis`; this
module only draws them.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from pipeline.plots import PlotError
from pipeline.relu import analysis
from pipeline.relu.symmetry import global_minimum_spectrum

__all__ = ["spectra"]

# Marker area (points²) of a simple eigenvalue; a multiplicity m is drawn with area × √m, so that
# the O(k²)-fold eigenvalues (171 at k = 20) stay within ~13 times the area of a simple one.
_AREA = 14.0
# The spectra of the point and of the global minimum sit this far left and right of their k.
_OFFSET = 0.22
# With an eigenvalue ≤ 0 (a saddle, a zero mode) the axis is symlog, linear within ±this: below
# the smallest constant 1/4 − 1/(2π) ≈ 0.09, so the bounded cluster stays on the logarithmic part.
_LINEAR_WIDTH = 0.05
_POINT_COLOUR = "C0"
_MINIMUM_COLOUR = "0.45"
_FIT_COLOURS = ("C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9")


def spectra(
    ds: xr.Dataset,
    *,
    start: str = "flip1",
    extra: int = 0,
    kind: str = "spurious minimum",
    isotropy: str | None = None,
    global_minimum: bool = True,
) -> Figure:
    """The Hessian spectra of one family of critical points as ``k`` grows.

    One column per ``k``: the distinct eigenvalues (:func:`~pipeline.relu.analysis.distinct_eigenvalues`)
    of the point picked by :func:`~pipeline.relu.analysis.representatives`, the marker's area
    growing with the multiplicity; beside it, hollow, the global minimum's closed form
    (:func:`~pipeline.relu.global_minimum_spectrum` at the same ``(k, d)``).  The growing
    eigenvalues' linear fits (:func:`~pipeline.relu.analysis.growth_fit`) are drawn as lines
    labelled with their slopes, the constants ``1/4 − 1/(2π)``, ``1/4``, ``1/4 + 1/(2π)`` and the
    threshold between bounded and growing eigenvalues as horizontal lines.  The ``y`` axis is
    logarithmic (symlog when an eigenvalue is ``≤ 0``), so the bounded cluster and the growing
    eigenvalues both show.

    Parameters
    ----------
    ds : xarray.Dataset
        A relu cube (:func:`pipeline.open_cube`).
    start : str, default "flip1"
        A value of the cube's ``start`` axis.
    extra : int, default 0
        A value of the cube's ``extra`` axis (``d − k``).
    kind : str, default "spurious minimum"
        ``"global minimum"``, ``"spurious minimum"`` or ``"saddle"``.
    isotropy : str, optional
        Only points of this isotropy (e.g. ``"S_{k-1} x S_1"``); any by default.
    global_minimum : bool, default True
        Draw the global minimum's spectrum beside each column.

    Returns
    -------
    matplotlib.figure.Figure
        One axes.  Artists carry the ``gid`` ``"eigenvalues"``, ``"global-minimum"``,
        ``"growth-fit-<branch>"``, ``"constant-<i>"`` and ``"threshold"``.  With a single ``k``,
        or when the number of distinct growing eigenvalues changes with ``k``, no fit is drawn
        and the title says so.

    Raises
    ------
    PlotError
        Naming ``start``, ``extra``, ``kind`` or ``isotropy`` when the value is not in the cube
        or no done, converged point matches.
    """
    selected = _select(ds, start=start, extra=extra, kind=kind, isotropy=isotropy)
    figure = Figure(figsize=(9.0, 5.0), layout="constrained")
    ax = figure.add_subplot()
    ks = [int(k) for k in selected["k"].values]
    offset = _OFFSET if global_minimum else 0.0
    drawn, counts = _draw_columns(ax, selected, -offset, _POINT_COLOUR, filled=True, gid="eigenvalues")
    if global_minimum:
        exact = analysis.spectra_by_k(
            {k: global_minimum_spectrum(k, k + int(extra)) for k in ks}, extra=int(extra)
        )
        values, _ = _draw_columns(ax, exact, offset, _MINIMUM_COLOUR, filled=False, gid="global-minimum")
        drawn = np.concatenate([drawn, values])
    note = _draw_fits(ax, selected, ks)
    for i, (value, name) in enumerate(zip(analysis.CONSTANTS, analysis.CONSTANT_NAMES, strict=True)):
        ax.axhline(value, color="0.3", ls=":", lw=0.9, gid=f"constant-{i}")
        # Labelled outside the axes, on the right, where no eigenvalue is drawn.
        ax.annotate(
            name,
            (1.0, value),
            xycoords=ax.get_yaxis_transform(),
            xytext=(4, 0),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize="x-small",
            color="0.3",
        )
    ax.axhline(
        analysis.THRESHOLD,
        color="0.6",
        ls="--",
        lw=0.8,
        gid="threshold",
        label=f"threshold {analysis.THRESHOLD:g}",
    )
    if np.all(drawn > 0):
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=_LINEAR_WIDTH)
    # Plain numbers on the ticks: the log scales' default labels are mathtext (10^k), whose font
    # lookup prints a warning per missing STIX/Computer Modern font where they are not installed.
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xticks(ks)
    ax.set_xlim(min(ks) - 1.0, max(ks) + 1.0)
    ax.set_xlabel("k (neurons)")
    ax.set_ylabel("Hessian eigenvalue")
    _legend(ax, kind, global_minimum, int(counts.max()))
    group = "" if isotropy is None else f", isotropy {isotropy}"
    title = f"Hessian spectra: {kind}, start {start}, d − k = {extra}{group}"
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize="medium")
    return figure


def _select(ds: xr.Dataset, *, start: str, extra: int, kind: str, isotropy: str | None) -> xr.Dataset:
    """:func:`~pipeline.relu.analysis.representatives`, its error a :class:`PlotError`.

    When nothing matches, the error names ``isotropy`` if the points of that kind exist without it.
    """
    try:
        return analysis.representatives(ds, start=start, extra=extra, kind=kind, isotropy=isotropy)
    except ValueError as error:
        message = str(error)
    if isotropy is not None and message.startswith("kind: no"):
        try:
            analysis.representatives(ds, start=start, extra=extra, kind=kind)
        except ValueError:
            pass
        else:
            message = "isotropy" + message.removeprefix("kind")
    raise PlotError(message)


def _draw_columns(
    ax: Axes, spectra: xr.Dataset, shift: float, colour: str, *, filled: bool, gid: str
) -> tuple[np.ndarray, np.ndarray]:
    """One column of distinct eigenvalues per ``k`` (area growing with multiplicity).

    Returns the values drawn and their multiplicities.
    """
    xs, ys, multiplicities = [], [], []
    for k in spectra["k"].values:
        row = spectra["eigenvalues"].sel(k=k).values
        values, counts = analysis.distinct_eigenvalues(row[np.isfinite(row)])
        xs.append(np.full(values.size, float(k) + shift))
        ys.append(values)
        multiplicities.append(counts)
    y, m = np.concatenate(ys), np.concatenate(multiplicities)
    ax.scatter(
        np.concatenate(xs),
        y,
        s=_AREA * np.sqrt(m),
        facecolors=colour if filled else "none",
        edgecolors=colour,
        linewidths=0.9,
        zorder=3,
        gid=gid,
    )
    return y, m


def _draw_fits(ax: Axes, selected: xr.Dataset, ks: list[int]) -> str:
    """The growing branches' linear fits; returns why none is drawn, or ``""``."""
    if len(ks) < 2:
        return "one k: no fit of the growth"
    try:
        fit = analysis.growth_fit(selected)
    except ValueError as error:
        return f"no fit of the growth ({str(error).removeprefix('spectra: ')})"
    x = np.linspace(min(ks) - 0.5, max(ks) + 0.5, 50)
    for branch in fit["branch"].values:
        at = fit.sel(branch=branch)
        slope, stderr = float(at["slope"]), float(at["slope_stderr"])
        spread = "" if math.isnan(stderr) else f" ± {stderr:.4f}"
        label = f"slope {slope:.4f}{spread} (vs {at['reference_name'].item()})"
        colour = _FIT_COLOURS[int(branch) % len(_FIT_COLOURS)]
        ax.plot(
            x,
            slope * x + float(at["intercept"]),
            "-",
            color=colour,
            lw=1.0,
            label=label,
            gid=f"growth-fit-{branch}",
        )
    return ""


def _legend(ax: Axes, kind: str, global_minimum: bool, largest: int) -> None:
    """The fits and the threshold, the two spectra, the marker areas of multiplicities 1 … ``largest``."""
    handles, labels = ax.get_legend_handles_labels()
    # Scatter areas are in points², a legend marker's size is its diameter in points.
    size = math.sqrt(_AREA)
    handles.append(Line2D([], [], ls="", marker="o", color=_POINT_COLOUR, markersize=size))
    labels.append(f"{kind} (cube)")
    if global_minimum:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec=_MINIMUM_COLOUR, markersize=size))
        labels.append("global minimum (closed form)")
    for multiplicity in sorted({1, round(math.sqrt(largest)), largest}):
        handles.append(Line2D([], [], ls="", marker="o", color="0.7", markersize=size * multiplicity**0.25))
        labels.append(f"multiplicity {multiplicity}")
    # Beside the axes: inside, it would hide the growing eigenvalues of the smallest k.
    ax.figure.legend(handles, labels, fontsize="x-small", loc="outside right upper")
