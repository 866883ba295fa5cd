"""The ``hessweep`` command: a thin layer over :func:`~pipeline.runner.run_sweep` and the store.

::

    hessweep run SWEEP [--store PATH] [--workers N | --scheduler ADDR] [--progress | --no-progress]
    hessweep status STORE [--format text|json]
    hessweep query STORE --var NAME [--sel DIM=VALUE ...] [--format table|csv|json]
    hessweep validate SWEEP

Exit codes: 0 success; 1 a run finished but some points failed; 2 bad input (an invalid sweep, a
store made by another sweep, a bad selection, ...), reported as one line ``hessweep: <message>``
on stderr, with nothing written.

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
from typing import Any

import numpy as np

from pipeline.errors import HessweepError
from pipeline.sweep import SweepSpec, load_sweep

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
        0 on success, 1 if a run recorded failed points, 2 for bad input.
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
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stdout is a terminal)",
    )
    run.set_defaults(handler=_run)

    status = commands.add_parser("status", help="done / failed / total points of a store, per axis")
    status.add_argument("store", metavar="STORE")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(handler=_status)

    query = commands.add_parser("query", help="print values of one variable of a store")
    query.add_argument("store", metavar="STORE")
    query.add_argument("--var", required=True, metavar="NAME", help="variable, e.g. spike or edge_right")
    query.add_argument("--sel", nargs="+", default=[], metavar="DIM=VALUE", help="e.g. c=0.5 loss=logistic")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(handler=_query)

    validate = commands.add_parser("validate", help="check a sweep; print its points, tasks and work")
    validate.add_argument("sweep", metavar="SWEEP")
    validate.set_defaults(handler=_validate)
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
    # Dask, xarray and Zarr load only for the commands that need them: `validate` stays quick.
    from pipeline import runner

    spec = load_sweep(args.sweep)
    path = args.store or os.path.join("results", f"{spec.name}.zarr")
    show = sys.stdout.isatty() if args.progress is None else args.progress
    report = runner.run_sweep(
        spec,
        path,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=show,
        echo=lambda line: print(line, flush=True),
    )
    print(f"store: {report.store}")
    print(f"cells: {report.computed_cells} computed, {report.skipped_cells} skipped (already done)")
    print(f"failed points: {report.failed_points}")
    for message in report.failures[:_SHOWN_FAILURES]:
        print(f"  {message}")
    if len(report.failures) > _SHOWN_FAILURES:
        print(f"  ... and {len(report.failures) - _SHOWN_FAILURES} more (see hessweep status)")
    return 0 if report.ok else 1


# ----------------------------------------------------------------------------------------------
# validate
# ----------------------------------------------------------------------------------------------


def _validate(args: argparse.Namespace) -> int:
    spec = load_sweep(args.sweep)
    print(describe(spec))
    return 0


def describe(spec: SweepSpec) -> str:
    """The lines ``hessweep validate`` prints: grid, points, tasks and the work estimate."""
    n_c, n_loss, n_signal, trials = spec.shape
    work = spec.work_estimate()
    theory_tasks = work["theory_solves"]
    mc_tasks = work["monte_carlo_draws"]
    writers = n_c * n_signal
    return "\n".join(
        [
            f"sweep {spec.name}: valid",
            f"grid: {n_c} c × {n_loss} loss × {n_signal} signal × {trials} trials, p = {spec.p}",
            f"points: {work['points']} (c × loss × signal), {work['points'] * trials} with trials",
            f"tasks: {theory_tasks + mc_tasks + writers} "
            f"({theory_tasks} theory, {mc_tasks} Monte Carlo, {writers} cell writes)",
            f"work: {theory_tasks} theory solves of {spec.theory.points} points, "
            f"{mc_tasks} Monte Carlo draws × {work['losses_per_draw']} losses, "
            f"about {work['monte_carlo_flops']:.3g} flops",
        ]
    )


# ----------------------------------------------------------------------------------------------
# status
# ----------------------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from pipeline import store

    summary = store.summary(args.store)
    if args.format == "json":
        print(json.dumps(_plain(summary), indent=2))
    else:
        print(_status_text(args.store, summary))
    return 0


def _status_text(path: str, summary: Mapping[str, Any]) -> str:
    cells = summary["cells"]
    lines = [
        f"store: {path} (sweep {summary['name']}, created {summary['created']})",
        f"points: {_counts(summary)}",
        f"cells: {cells['done']} done, {cells['pending']} pending, {cells['total']} total",
    ]
    for axis, entries in summary["axes"].items():
        lines.append(f"{axis}:")
        for entry in entries:
            lines.append(f"  {entry['value']}: {_counts(entry)}")
    if summary["errors"]:
        lines.append("errors:")
        for error in summary["errors"]:
            where = ", ".join(f"{key}={error[key]}" for key in ("c", "loss", "signal", "trial"))
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


def _position(cube: Any, dim: str, text: str) -> int:
    """Index along ``dim`` of the value written ``text``."""
    where = f"--sel {dim}={text}"
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
