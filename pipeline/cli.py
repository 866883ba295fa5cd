"""The ``hessweep`` command: a thin layer over :func:`~pipeline.runner.run_sweep` and the store.

::

    hessweep run SWEEP [--store PATH] [--workers N | --scheduler ADDR] [--retry-failed] [--attempts N]
                       [--progress | --no-progress]
    hessweep status STORE [--format text|json] [--max-errors N]
    hessweep query STORE --var NAME [--sel DIM=VALUE ...] [--format table|csv|json]
    hessweep validate SWEEP
    hessweep plot STORE KIND -o FILE [options]    (KIND: by the cube's family: glm phase-diagram,
                                                   spectrum, alignment; pb density, index; pbnet
                                                   index-energy, critical-energy; relu spectra)

Exit codes: 0 success; 1 a run ended with failed points in its store (this run's or, not tried
again, an earlier run's) or was stopped because the store could not be written (a full disk),
or ``verify`` found problems; 2 bad input (an invalid sweep, a store made by another sweep or in
use by another run, a bad selection, ...), reported as one line ``hessweep: <message>`` on
stderr, with nothing written.

Selections (``--sel``): a string coordinate (``loss``, ``target``) is matched exactly; a numeric
one (``c``, ``signal``) selects the coordinate value equal to the number given within a relative
tolerance of ``1e-9`` (absolute ``1e-12`` about 0), so that ``signal=0.3`` finds the
``0.30000000000000004`` of a linspace axis while two distinct grid values are never confused; an
integer coordinate (``trial``) is matched exactly, and a dimension without a coordinate (``eig``,
``x``) takes a position.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import HessweepError
from pipeline.sweep import load_sweep

__all__ = ["SelectionError", "describe", "main", "select"]

# Tolerances of numeric --sel values: far below the spacing of any grid (whose values are distinct
# floats written with at most ~16 digits), far above the rounding of a decimal typed by hand.
_SEL_RTOL = 1e-9
_SEL_ATOL = 1e-12
_SHOWN_FAILURES = 5


class SelectionError(HessweepError, ValueError):
    """A ``--sel`` or ``--var`` of ``hessweep query`` that does not fit the cube."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hessweep`` command line; return its exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; by default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 1 if a run recorded failed points or verify found problems, 2 for bad input.
    """
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except HessweepError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(_os_message(error))
    return code


def _fail(message: str) -> int:
    print(f"hessweep: {message}", file=sys.stderr)
    return 2


def _os_message(error: OSError) -> str:
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hessweep",
        description="Sweeps of Hessian eigenspectra: random matrix theory and Monte Carlo into a Zarr cube.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="compute a sweep (or the rest of it) into its store")
    run.add_argument("sweep", metavar="SWEEP", help="sweep definition (YAML)")
    run.add_argument("--store", metavar="PATH", help="Zarr store (default: results/<name>.zarr)")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=_positive, metavar="N", help="local worker processes (default: one per core)"
    )
    where.add_argument(
        "--scheduler", metavar="ADDR", help="address of an existing scheduler, tcp://HOST:PORT"
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="compute again the points that an earlier run recorded as failed",
    )
    run.add_argument(
        "--attempts",
        type=_positive,
        default=3,
        metavar="N",
        help="tries of a computation that raises before its points are recorded as failed (default 3)",
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stdout is a terminal)",
    )
    run.set_defaults(handler=_run)

    status = commands.add_parser("status", help="done / failed / total points of a store, per axis")
    status.add_argument("store", metavar="STORE")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.add_argument(
        "--max-errors", type=_positive, default=20, metavar="N", help="failed points listed (default 20)"
    )
    status.set_defaults(handler=_status)

    query = commands.add_parser("query", help="print values of one variable of a store")
    query.add_argument("store", metavar="STORE")
    query.add_argument("--var", required=True, metavar="NAME", help="variable, e.g. spike or edge_right")
    query.add_argument("--sel", nargs="+", default=[], metavar="DIM=VALUE", help="e.g. c=0.5 loss=logistic")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(handler=_query)

    verify = commands.add_parser("verify", help="check that every done point of a store is complete")
    verify.add_argument("store", metavar="STORE")
    verify.add_argument("--max", type=_positive, default=50, metavar="N", help="problems listed (default 50)")
    verify.set_defaults(handler=_verify)

    validate = commands.add_parser("validate", help="check a sweep; print its points, tasks and work")
    validate.add_argument("sweep", metavar="SWEEP")
    validate.set_defaults(handler=_validate)

    plot = commands.add_parser(
        "plot",
        help="draw a figure of a store as PNG or PDF",
        description="Draw a figure of a store. GLM cubes: phase-diagram [--loss NAME] [--var align|gap] "
        "[--side auto|left|right]; spectrum --sel c=.. loss=.. signal=.. [--mp-fit] [--bins N]; "
        "alignment --loss NAME --c VALUE [--target mu|w_star|w] [--side ...]. pb cubes: density "
        "--sel phi=.. eps=.. [--bins N]; index. pbnet cubes: index-energy; critical-energy. relu cubes: "
        "spectra [--sel start=.. extra=..].",
    )
    plot.add_argument("store", metavar="STORE")
    plot.add_argument("kind", metavar="KIND", help=", ".join(_PLOT_KINDS))
    plot.add_argument("-o", "--output", metavar="FILE", help="the image to write: .png or .pdf")
    plot.add_argument("--loss", metavar="NAME", help="phase-diagram (default: every loss), alignment")
    plot.add_argument("--var", metavar="align|gap", help="phase-diagram: the colour (default: align)")
    plot.add_argument("--side", metavar="auto|left|right", help="phase-diagram, alignment (default: auto)")
    plot.add_argument(
        "--sel",
        nargs="+",
        metavar="DIM=VALUE",
        help="spectrum: c=.. loss=.. signal=..; density: phi=.. eps=..; spectra: start=.. extra=..",
    )
    plot.add_argument("--mp-fit", action="store_true", help="spectrum: add the fitted Marchenko–Pastur law")
    plot.add_argument("--bins", metavar="N", help="spectrum, density: histogram bins (default: 50)")
    plot.add_argument("--c", metavar="VALUE", help="alignment: a value of the c axis")
    plot.add_argument("--target", metavar="mu|w_star|w", help="alignment (default: the signal's vector)")
    plot.set_defaults(handler=_plot)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


# ----------------------------------------------------------------------------------------------
# run
# ----------------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    spec = load_sweep(args.sweep)
    # Dask, xarray and Zarr load only once the sweep is valid (a bad file is refused at once) and
    # only for the commands that need them.
    from pipeline import runner

    path = args.store or os.path.join("results", f"{spec.name}.zarr")
    show = sys.stdout.isatty() if args.progress is None else args.progress
    report = runner.run_sweep(
        spec,
        path,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=show,
        attempts=args.attempts,
        retry_failed=args.retry_failed,
        echo=lambda line: print(line, flush=True),
    )
    print(f"store: {report.store}")
    print(f"cells: {report.computed_cells} computed, {report.skipped_cells} skipped (already done or failed)")
    print(f"failed points: {report.failed_points}")
    for message in report.failures[:_SHOWN_FAILURES]:
        print(f"  {message}")
    if len(report.failures) > _SHOWN_FAILURES:
        print(f"  ... and {len(report.failures) - _SHOWN_FAILURES} more (see hessweep status)")
    if report.earlier_failed_points:
        print(
            f"failed in an earlier run and not tried again: {report.earlier_failed_points} points "
            "(hessweep status lists them; hessweep run --retry-failed tries them again)"
        )
    if report.stopped:
        print(f"stopped: {report.stopped}; the cells not written are pending: run again to resume")
    return 0 if report.ok else 1


# ----------------------------------------------------------------------------------------------
# validate
# ----------------------------------------------------------------------------------------------


def _validate(args: argparse.Namespace) -> int:
    spec = load_sweep(args.sweep)
    print(describe(spec))
    return 0


def describe(spec: Any) -> str:
    """The lines ``hessweep validate`` prints: the sweep's name, then its family's grid, tasks and work."""
    from pipeline.families import family_of

    return "\n".join([f"sweep {spec.name}: valid", *family_of(spec).describe(spec)])


# ----------------------------------------------------------------------------------------------
# status
# ----------------------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from pipeline import store

    summary = store.summary(args.store, max_errors=args.max_errors)
    if args.format == "json":
        print(json.dumps(_plain(summary), indent=2))
    else:
        print(_status_text(args.store, summary))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pipeline import store

    checked, problems = store.verify(args.store)
    if not problems:
        print(f"{args.store}: {checked} done points checked, no problems")
        return 0
    for line in problems[: args.max]:
        print(line)
    if len(problems) > args.max:
        print(f"... and {len(problems) - args.max} more")
    print(f"{args.store}: {len(problems)} problems ({checked} done points checked)")
    return 1


def _status_text(path: str, summary: Mapping[str, Any]) -> str:
    cells = summary["cells"]
    lines = [
        f"store: {path} (sweep {summary['name']}, created {summary['created']})",
        f"points: {_counts(summary)}",
        f"cells: {cells['done']} done, {cells['failed']} failed, {cells['pending']} pending, "
        f"{cells['total']} total",
    ]
    for axis, entries in summary["axes"].items():
        lines.append(f"{axis}:")
        for entry in entries:
            lines.append(f"  {entry['value']}: {_counts(entry)}")
    for remark in summary["remarks"]:
        lines.append(f"remark: {remark['count']} done points: {remark['what']}")
    if summary["errors"]:
        shown = len(summary["errors"])
        more = "" if shown == summary["failed"] else f", the first {shown}"
        lines.append(f"failed points{more} (hessweep run --retry-failed tries them again):")
        for error in summary["errors"]:
            where = ", ".join(f"{key}={error[key]}" for key in summary["shape"])
            lines.append(f"  {where}: {error['message']}")
    return "\n".join(lines)


def _counts(entry: Mapping[str, Any]) -> str:
    return f"{entry['done']} done, {entry['failed']} failed, {entry['total']} total"


# ----------------------------------------------------------------------------------------------
# query
# ----------------------------------------------------------------------------------------------


def _query(args: argparse.Namespace) -> int:
    from pipeline import store

    selection = _parse_sel(args.sel)
    cube = store.open_cube(args.store)
    values = select(cube, args.var, selection)
    table = values.to_dataframe(name=args.var).reset_index()
    # Columns: the variable's dimensions in cube order, then the other coordinates (the selected
    # ones, `side` and `rank` of `k`), then the values.
    dims = [str(dim) for dim in cube[args.var].dims]
    first = [name for name in dims if name in table.columns]
    others = [name for name in table.columns if name not in first and name != args.var]
    table = table[[*first, *others, args.var]]
    if args.format == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif args.format == "json":
        records = [
            {key: _json_value(value) for key, value in row.items()} for row in table.to_dict("records")
        ]
        document = {"variable": args.var, "selection": selection, "records": records}
        print(json.dumps(document, indent=2, allow_nan=False))
    else:
        print(table.to_string(index=False))
    return 0


def _parse_sel(items: Sequence[str]) -> dict[str, str]:
    selection: dict[str, str] = {}
    for item in items:
        dim, equals, value = item.partition("=")
        if not equals or not dim or not value:
            raise SelectionError(f"--sel {item}: expected DIM=VALUE, e.g. c=0.5")
        if dim in selection:
            raise SelectionError(f"--sel {item}: {dim} is selected twice")
        selection[dim] = value
    return selection


def select(cube: Any, var: str, selection: Mapping[str, str]) -> Any:
    """One variable of a cube at a selection given as text, as ``hessweep query`` reads it.

    Parameters
    ----------
    cube : xarray.Dataset
        From :func:`pipeline.open_cube`.
    var : str
        A data variable of the cube.
    selection : mapping of str to str
        Dimension name to value, as typed: matched as described in this module's docstring.

    Returns
    -------
    xarray.DataArray
        The variable with every selected dimension reduced to one value.

    Raises
    ------
    SelectionError
        For an unknown variable or dimension, or a value that is not on its axis.
    """
    if var not in cube.data_vars:
        raise SelectionError(
            f"--var {var}: no such variable (have: {', '.join(sorted(map(str, cube.data_vars)))})"
        )
    values = cube[var]
    positions: dict[str, int] = {}
    for dim, text in selection.items():
        if dim not in values.dims:
            raise SelectionError(
                f"--sel {dim}={text}: {var} has no dimension {dim} (has: {', '.join(map(str, values.dims))})"
            )
        positions[dim] = _position(cube, dim, text)
    return values.isel(positions)


def _position(cube: Any, dim: str, text: str, where: str | None = None) -> int:
    """Index along ``dim`` of the value written ``text``; errors start with ``where`` (the option)."""
    where = where or f"--sel {dim}={text}"
    size = cube.sizes[dim]
    if dim not in cube.coords:
        index = _integer(text, where)
        if not 0 <= index < size:
            raise SelectionError(f"{where}: must be a position in [0, {size})")
        return index
    coordinate = np.asarray(cube[dim].values)
    if coordinate.dtype.kind in "iub":
        found = np.flatnonzero(coordinate == _integer(text, where))
    elif coordinate.dtype.kind == "f":
        try:
            number = float(text)
        except ValueError:
            raise SelectionError(f"{where}: not a number") from None
        found = np.flatnonzero(np.isclose(coordinate, number, rtol=_SEL_RTOL, atol=_SEL_ATOL))
    else:
        # Labels: variable-length strings (numpy StringDType), compared as Python strings.
        found = np.flatnonzero([str(label) == text for label in coordinate.tolist()])
    if found.size != 1:
        shown = ", ".join(str(_json_value(v)) for v in coordinate[:20])
        more = ", ..." if coordinate.size > 20 else ""
        raise SelectionError(f"{where}: not a value of {dim} (values: {shown}{more})")
    return int(found[0])


def _integer(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SelectionError(f"{where}: not an integer") from None


# ----------------------------------------------------------------------------------------------
# plot
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PlotKind:
    """A kind of figure: the family of cube it draws, its options (by attribute name), those it
    requires, and the dimensions its ``--sel`` names (all of them required when ``sel`` is)."""

    family: str
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    selects: tuple[str, ...] = ()


# Every kind of figure, by name: a cube is drawn only by the kinds of its family.
_PLOT_KINDS = {
    "phase-diagram": _PlotKind("glm", ("loss", "var", "side")),
    "spectrum": _PlotKind("glm", ("sel", "mp_fit", "bins"), ("sel",), ("c", "loss", "signal")),
    "alignment": _PlotKind("glm", ("loss", "c", "target", "side"), ("loss", "c")),
    "density": _PlotKind("pb", ("sel", "bins"), ("sel",), ("phi", "eps")),
    "index": _PlotKind("pb"),
    "index-energy": _PlotKind("pbnet"),
    "critical-energy": _PlotKind("pbnet"),
    "spectra": _PlotKind("relu", ("sel",), (), ("start", "extra")),
}
_PLOT_FLAGS = ("loss", "var", "side", "sel", "bins", "c", "target")


def _plot(args: argparse.Namespace) -> int:
    # matplotlib loads only for this command.
    from pipeline import plots, store
    from pipeline.pb import figures as pb_figures
    from pipeline.relu import figures as relu_figures

    _check_plot_options(args)
    cube = store.open_cube(args.store)
    kind = _PLOT_KINDS[args.kind]
    family = str(cube.attrs.get("family", "glm"))
    if kind.family != family:
        kinds = ", ".join(name for name, other in _PLOT_KINDS.items() if other.family == family)
        raise plots.PlotError(
            f"KIND {args.kind}: a figure of {kind.family} cubes; this cube is of family {family} "
            f"(its kinds: {kinds or 'none'})"
        )
    at = _plot_selection(cube, args.sel or [], args.kind)
    bins = plots.DEFAULT_BINS if args.bins is None else int(args.bins)
    if args.kind == "phase-diagram":
        loss = _plot_loss(cube, args.loss) if args.loss is not None else None
        figure = plots.phase_diagram(cube, loss=loss, var=args.var or "align", side=args.side or "auto")
    elif args.kind == "spectrum":
        figure = plots.spectrum(cube, **at, mp_fit=args.mp_fit, bins=bins)
    elif args.kind == "alignment":
        c = float(cube["c"].values[_position(cube, "c", args.c, where=f"--c {args.c}")])
        figure = plots.alignment(
            cube, loss=_plot_loss(cube, args.loss), c=c, target=args.target, side=args.side or "auto"
        )
    elif args.kind == "density":
        figure = pb_figures.density(cube, **at, bins=bins)
    elif args.kind == "index":
        figure = pb_figures.index(cube)
    elif args.kind == "index-energy":
        figure = pb_figures.index_energy(cube)
    elif args.kind == "critical-energy":
        figure = pb_figures.critical_energy(cube)
    else:
        figure = relu_figures.spectra(cube, **at)
    plots.save(figure, args.output)
    print(args.output)
    return 0


def _check_plot_options(args: argparse.Namespace) -> None:
    """Everything that can be checked before the store is opened: kind, options, values, suffix."""
    from pipeline.plots import PHASE_VARIABLES, SIDES, SUFFIXES, PlotError
    from pipeline.scenario import TARGETS

    if args.kind not in _PLOT_KINDS:
        raise PlotError(f"KIND {args.kind}: not a kind of figure (kinds: {', '.join(_PLOT_KINDS)})")
    kind = _PLOT_KINDS[args.kind]
    given = [name for name in _PLOT_FLAGS if getattr(args, name) is not None]
    given += ["mp_fit"] if args.mp_fit else []
    for name in given:
        if name not in kind.options:
            options = ", ".join(_flag(option) for option in kind.options) or "none"
            raise PlotError(f"{_flag(name)}: not an option of {args.kind} (its options: {options})")
    for name in kind.required:
        if getattr(args, name) is None:
            raise PlotError(f"{_flag(name)}: required for {args.kind}")
    for name, choices in (("var", PHASE_VARIABLES), ("side", SIDES), ("target", TARGETS)):
        value = getattr(args, name)
        if value is not None and value not in choices:
            raise PlotError(f"{_flag(name)} {value}: must be one of {', '.join(choices)}")
    if args.bins is not None and not (args.bins.isdigit() and int(args.bins) >= 1):
        raise PlotError(f"--bins {args.bins}: must be an integer >= 1")
    if args.output is None:
        raise PlotError(f"-o: required: the image file to write ({' or '.join(SUFFIXES)})")
    suffix = os.path.splitext(args.output)[1]
    if suffix.lower() not in SUFFIXES:
        shown = f"{suffix!r}" if suffix else "no suffix"
        raise PlotError(f"-o {args.output}: cannot write {shown} (use {' or '.join(SUFFIXES)})")


def _listed(names: Sequence[str]) -> str:
    """``"c, loss and signal"``."""
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _plot_loss(cube: Any, name: str) -> str:
    from pipeline.plots import PlotError

    losses = [str(label) for label in cube["loss"].values.tolist()]
    if name not in losses:
        raise PlotError(f"--loss {name}: not a loss of this cube (losses: {', '.join(losses)})")
    return name


def _plot_selection(cube: Any, items: Sequence[str], name: str) -> dict[str, Any]:
    """The grid values of ``--sel`` (matched as ``query`` does), as the figure's keyword arguments.

    A kind that requires ``--sel`` needs every dimension it selects; one that does not takes any
    of them and leaves the others at the figure's defaults.
    """
    from pipeline.plots import PlotError

    kind = _PLOT_KINDS[name]
    selection = _parse_sel(items)
    for dim in selection:
        if dim not in kind.selects:
            raise PlotError(f"--sel {dim}={selection[dim]}: {name} selects only {_listed(kind.selects)}")
    missing = [dim for dim in kind.selects if dim not in selection]
    if "sel" in kind.required and missing:
        raise PlotError(f"--sel: {name} needs {_listed(kind.selects)} (missing: {', '.join(missing)})")
    at: dict[str, Any] = {}
    for dim, text in selection.items():
        value = cube[dim].values[_position(cube, dim, text)]
        at[dim] = _json_value(value) if isinstance(value, np.generic) else str(value)
    return at


def _json_value(value: Any) -> Any:
    """A JSON-safe scalar: NaN as ``null``, ±inf as ``"inf"``/``"-inf"``, numpy scalars as Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    return _json_value(value)


if __name__ == "__main__":
    sys.exit(main())
