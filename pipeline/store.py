"""The result cube: a Zarr v3 store of every grid point's theory and Monte Carlo results.

Only this module knows Zarr.  The layout is the one of ``shared/DESIGN.md``:

* dimensions ``c``, ``loss``, ``signal``, ``trial``, ``eig`` or ``node`` (below), ``x`` (theory grid index),
  ``k`` (``2K`` extreme eigen-pairs: bottom ``0 … K−1`` then top ``0 … K−1``, with the coordinates
  ``side`` = ``"bottom"``/``"top"`` and ``rank``, 0 = most extreme), ``target`` (``mu``, ``w_star``,
  ``w``) and ``spike_index`` (at most :data:`MAX_SPIKES` predicted spikes, ascending, NaN padded);
* Monte Carlo variables ``mc_align``, ``mc_negative_fraction`` and, by ``montecarlo.method``
  (the ``montecarlo_method`` attribute): ``dense``, ``eigenvalues`` (dimension ``eig``, ``0 … p−1``);
  ``lanczos``, the quadrature ``mc_nodes`` and ``mc_weights`` (dimension ``node``,
  ``probes × steps``), ``mc_density`` (on the theory's ``density_x``), ``mc_extreme`` and
  ``mc_residual`` (the extreme Ritz values and residuals, along ``k`` as ``mc_align``) and
  ``mc_atom_zero``; theory variables
  ``density``, ``density_x``, ``edge_left``, ``edge_right``, ``bulk_count`` (the number of disjoint
  intervals of the support), ``spike``, ``spike_align``, ``atom_zero``, ``negative_fraction``,
  ``mass``, ``converged``, ``residual``, ``spikes_defined``, ``note``; and the bookkeeping
  ``status``, ``error`` and ``done`` per point ``(c, loss, signal, trial)``.

**The unit of writing is a cell** ``(i_c, i_signal)``: every variable is chunked one cell wide along
``c`` and ``signal`` and full along every other dimension, so one :func:`write_cell` call writes
whole chunks that no other call touches, and cells can be written from any number of processes in
any order.  A write stores the data, ``status`` and ``error`` first, then ``done``: a point whose
``done`` is set has complete data, whatever happened to the writer afterwards.

**Not run versus NaN.**  Zarr v3 does not store a chunk equal to the fill value, and reads a chunk
never written as the fill value; float results can be NaN legitimately (an alignment with a zero
target, padded spikes).  So the data never tells "not run" from "ran": only ``status`` and ``done``
do.  The fill values are NaN (floats), ``False`` (bools), ``0`` (integers) and ``""`` (strings), so
an unwritten point reads as ``status == STATUS_PENDING``, ``done == False`` (and ``bulk_count == 0``:
a written point has at least one bulk).

**Encoding.**  Strings (``loss``, ``side``, ``target`` labels, ``error`` and ``note`` messages) are
Zarr v3 variable-length UTF-8 strings (data type ``"string"``, numpy ``StringDType``): fixed-width
strings have no stable Zarr v3 type (``UnstableSpecificationWarning``).

**Consolidated metadata** is written once, by :func:`create_store`, and read by :func:`open_cube`.
It holds the metadata of the arrays (shapes, chunks, types, attributes), never chunk data, and a
region write changes no metadata, so it stays exact for the life of the store; the cell writes
set chunk data only (zarr's array ``setitem``), so no worker ever rewrites the root ``zarr.json``
(concurrent re-consolidations would race).  Consolidated metadata is a zarr-python extension of Zarr v3
(``must_understand: false``): other readers ignore it and read the per-array metadata.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import socket
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
import zarr.api.asynchronous
import zarr.errors
from zarr.core.sync import sync as zarr_sync

from pipeline.errors import StoreError, SweepError
from pipeline.lanczos import LanczosResult
from pipeline.montecarlo import MonteCarloResult
from pipeline.scenario import TARGETS
from pipeline.sweep import SweepSpec
from pipeline.theory import TheoryResult

__all__ = [
    "CUBE_FORMAT",
    "MAX_SPIKES",
    "STATUS_DONE",
    "STATUS_FAILED",
    "STATUS_PENDING",
    "CellFailure",
    "check_store",
    "create_store",
    "failed_cells",
    "lock",
    "open_cube",
    "pending_cells",
    "summary",
    "verify",
    "write_cell",
]

#: ``status`` of a point not written yet (the fill value: an unwritten chunk reads as pending).
STATUS_PENDING = 0
#: ``status`` of a point whose data is complete (``done`` is then ``True``).
STATUS_DONE = 1
#: ``status`` of a point whose computation failed; ``error`` holds the message, ``done`` is ``False``.
STATUS_FAILED = 2
#: Most predicted spikes stored per point (the rank of the low-rank part of the Hessian's mean).
MAX_SPIKES = 3
#: Version of the cube layout, in the ``cube_format`` attribute (2: ``bulk_count`` added; 3: the
#: Monte Carlo variables depend on ``montecarlo.method``, named in the ``montecarlo_method`` attribute).
CUBE_FORMAT = 3
# Formats this version reads and resumes: a format-2 cube is a format-3 dense cube.
_READABLE_FORMATS = (2, 3)

_STRING = np.dtypes.StringDType()
_LIBRARIES = ("numpy", "scipy", "dask", "distributed", "xarray", "zarr")
_SIDES = ("bottom", "top")
# The cell dimensions: one chunk wide.  Every other dimension is one chunk.
_CELL_DIMS = ("c", "signal")
# Where create_store builds a template before renaming it to the store's path.
_PARTIAL = ".partial"
# (dims, dtype) of every data variable, in writing order; `done` is written last, on its own.
_POINT = ("c", "loss", "signal", "trial")
_THEORY = ("c", "loss", "signal")
_COMMON_VARIABLES: dict[str, tuple[tuple[str, ...], np.dtype[Any]]] = {
    "mc_align": ((*_POINT, "k", "target"), np.dtype(np.float64)),
    "mc_negative_fraction": (_POINT, np.dtype(np.float64)),
    "density": ((*_THEORY, "x"), np.dtype(np.float64)),
    "density_x": ((*_THEORY, "x"), np.dtype(np.float64)),
    "edge_left": (_THEORY, np.dtype(np.float64)),
    "edge_right": (_THEORY, np.dtype(np.float64)),
    "bulk_count": (_THEORY, np.dtype(np.int16)),
    "spike": ((*_THEORY, "spike_index"), np.dtype(np.float64)),
    "spike_align": ((*_THEORY, "spike_index", "target"), np.dtype(np.float64)),
    "atom_zero": (_THEORY, np.dtype(np.float64)),
    "negative_fraction": (_THEORY, np.dtype(np.float64)),
    "mass": (_THEORY, np.dtype(np.float64)),
    "converged": (_THEORY, np.dtype(np.bool_)),
    "residual": (_THEORY, np.dtype(np.float64)),
    "spikes_defined": (_THEORY, np.dtype(np.bool_)),
    "note": (_THEORY, _STRING),
    "status": (_POINT, np.dtype(np.int8)),
    "error": (_POINT, _STRING),
    "done": (_POINT, np.dtype(np.bool_)),
}
# The Monte Carlo variables that depend on the method (`montecarlo.method` of the sweep).
_METHOD_VARIABLES: dict[str, dict[str, tuple[tuple[str, ...], np.dtype[Any]]]] = {
    "dense": {"eigenvalues": ((*_POINT, "eig"), np.dtype(np.float64))},
    "lanczos": {
        "mc_nodes": ((*_POINT, "node"), np.dtype(np.float64)),
        "mc_weights": ((*_POINT, "node"), np.dtype(np.float64)),
        "mc_density": ((*_POINT, "x"), np.dtype(np.float64)),
        "mc_extreme": ((*_POINT, "k"), np.dtype(np.float64)),
        "mc_residual": ((*_POINT, "k"), np.dtype(np.float64)),
        "mc_atom_zero": (_POINT, np.dtype(np.float64)),
    },
}
_DESCRIPTIONS = {
    "eigenvalues": "all Monte Carlo eigenvalues, ascending",
    "mc_nodes": "Lanczos quadrature nodes (Ritz values) of the spectral measure, ascending, NaN padded",
    "mc_weights": "Lanczos quadrature weights (sum 1), NaN padded",
    "mc_density": "Monte Carlo density (Lanczos quadrature, smoothed) at density_x, atom at 0 left out",
    "mc_extreme": "extreme Ritz values: bottom (smallest first) then top (largest first), as mc_align",
    "mc_residual": "Ritz residual |Hu - θu| / max|θ| of each extreme pair",
    "mc_atom_zero": "quadrature weight of the Ritz values at 0 (within the zero tolerance)",
    "mc_align": "squared cosine of the k-th extreme Monte Carlo eigenvector with the unit target",
    "mc_negative_fraction": "fraction of the Monte Carlo eigenvalues below -p·eps·max|λ|",
    "density": "limiting density of the bulk",
    "density_x": "abscissae of the density",
    "edge_left": "leftmost edge of the bulk support (-inf if unbounded)",
    "edge_right": "rightmost edge of the bulk support (+inf if unbounded)",
    "bulk_count": "number of disjoint intervals (bulks) of the support (0 where no theory result)",
    "spike": "predicted isolated eigenvalues, ascending, NaN padded",
    "spike_align": "predicted squared cosine of each spike's eigenvector with the unit target",
    "atom_zero": "mass of the limiting spectrum at 0",
    "negative_fraction": "mass of the limiting spectrum below 0",
    "mass": "integral of the density plus the atom at 0",
    "converged": "the theory's solver converged everywhere",
    "residual": "largest relative residual of the fixed-point equation",
    "spikes_defined": "the spike theorem applies (bounded curvature law)",
    "note": "the theory's remark on this point",
    "status": "0 pending, 1 done, 2 failed",
    "error": "why the point failed ('' unless status == 2)",
    "done": "the point's data is complete (written last)",
}


@dataclass(frozen=True)
class CellFailure:
    """A computation that failed for good (after its retries): what :func:`write_cell` records.

    Attributes
    ----------
    message : str
        Why it failed, e.g. ``"RuntimeError: dsytrd failed"``; stored in the ``error`` variable.
    """

    message: str


# ----------------------------------------------------------------------------------------------
# Creation and checks
# ----------------------------------------------------------------------------------------------


def create_store(path: str | os.PathLike[str], spec: SweepSpec, *, overwrite: bool = False) -> None:
    """Create the empty cube of a sweep: every variable's metadata, the coordinates and attributes.

    Run it once, in one process, before any :func:`write_cell`.  Every point is pending
    (``status == 0``, ``done == False``); no data chunk is written.

    Parameters
    ----------
    path : str or path-like
        A directory, e.g. ``results/<name>.zarr``; its parent is created if needed.
    spec : SweepSpec
        The sweep; it fixes the cube's shape and is stored in its attributes (``spec``, as JSON of
        :meth:`SweepSpec.to_dict`, and ``sweep_yaml``, the source text).
    overwrite : bool, default False
        Replace whatever is at ``path``.  Without it an existing path is refused.

    Raises
    ------
    StoreError
        If ``path`` exists and ``overwrite`` is not set.
    """
    where = os.fspath(path).rstrip(os.sep)
    if os.path.lexists(where) and not overwrite:
        raise StoreError(where, "already exists (check it with check_store, or remove it)")
    Path(where).parent.mkdir(parents=True, exist_ok=True)
    # Built beside the store and renamed into place: a process killed while writing the template
    # leaves `<store>.partial`, never a half-written store that a later run could trust.  A
    # leftover from such a process is removed here.
    partial = where + _PARTIAL
    shutil.rmtree(partial, ignore_errors=True)
    template = _template(spec)
    encoding = {name: {"chunks": _chunks(spec, dims)} for name, (dims, _) in _variables(spec).items()}
    try:
        with warnings.catch_warnings():
            # zarr warns that consolidated metadata is not (yet) part of the Zarr v3 specification.
            # It is a zarr-python extension marked `must_understand: false`, so other readers skip
            # it; we want it for one-read opening (see the module docstring).
            warnings.filterwarnings(
                "ignore",
                message="Consolidated metadata is currently not part",
                category=zarr.errors.ZarrUserWarning,
            )
            template.to_zarr(
                partial, mode="w", compute=False, zarr_format=3, consolidated=True, encoding=encoding
            )
        if overwrite and os.path.lexists(where):
            _remove(where)
        os.rename(partial, where)
    except BaseException:
        # A full disk or a denied write: nothing is left behind (a kill -9 leaves `.partial`).
        shutil.rmtree(partial, ignore_errors=True)
        raise


def check_store(path: str | os.PathLike[str], spec: SweepSpec) -> None:
    """Check that an existing store is the cube of this very sweep (to resume it).

    Raises
    ------
    StoreError
        If the store is missing or not a hessweep cube, or if it was made by a different sweep:
        the message names every field that differs, as ``field: store's != sweep's``, e.g.
        ``results/a.zarr: made by a different sweep (store != sweep): p: 400 != 800; seed: 0 != 1``.
    """
    where = os.fspath(path)
    attrs = _attributes(where)
    try:
        stored = SweepSpec.from_dict(json.loads(attrs["spec"]))
    except (json.JSONDecodeError, TypeError, SweepError) as error:
        raise StoreError(where, f"its 'spec' attribute is not a valid sweep: {error}") from None
    found = stored.differences(spec)
    if found:
        raise StoreError(where, "made by a different sweep (store != sweep): " + "; ".join(found))
    missing = _missing_arrays(where, spec)
    if missing:
        raise StoreError(
            where,
            f"an incomplete cube (no {', '.join(missing)}): its creation was cut short; remove it and "
            "run again",
        )


def open_cube(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a cube for reading, lazily (dask arrays, one chunk per cell).

    Coordinates are labelled: ``c``, ``signal`` floats; ``loss``, ``target``, ``side`` strings;
    so ``open_cube(p).sel(c=0.5, loss="logistic")`` works.  Select ``done`` (or
    ``status == STATUS_DONE``) before trusting a value: an unwritten point reads as NaN/False/0.

    Raises
    ------
    StoreError
        If the store is missing or not a hessweep cube.
    """
    where = os.fspath(path)
    _attributes(where)
    # consolidated=True: the root zarr.json holds the metadata of every array, written once at
    # creation and still exact (region writes change no metadata), so opening is one read.
    return xr.open_zarr(where, consolidated=True)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def write_cell(
    path: str | os.PathLike[str],
    spec: SweepSpec,
    i_c: int,
    i_signal: int,
    theory: Sequence[TheoryResult | CellFailure],
    montecarlo: Sequence[Sequence[MonteCarloResult | LanczosResult | CellFailure] | CellFailure],
) -> None:
    """Write one cell ``(i_c, i_signal)``: every loss and trial, data first, then ``done``.

    Parameters
    ----------
    path : str or path-like
        A store made by :func:`create_store` for ``spec``.
    spec : SweepSpec
        The sweep (for the shapes; it is not compared with the store's, see :func:`check_store`).
    i_c, i_signal : int
        The cell.
    theory : sequence
        One entry per loss (in ``spec.grid.loss`` order): a :class:`TheoryResult` with
        ``spec.theory.points`` abscissae and at most :data:`MAX_SPIKES` spikes, or a
        :class:`CellFailure`.
    montecarlo : sequence
        One entry per trial: a sequence of one :class:`MonteCarloResult` (``p`` eigenvalues,
        ``spec.montecarlo.k`` alignments per side and target) or :class:`CellFailure` per loss,
        or one :class:`CellFailure` for the whole trial (its draw failed).

    A point ``(loss, trial)`` is done when both its theory and its Monte Carlo result are there
    and the theory converged (``TheoryResult.converged``); otherwise its ``status`` is
    :data:`STATUS_FAILED`, ``error`` says why (``theory: …``, ``montecarlo: …``; for a theory
    that did not converge, ``theory: did not converge (mass …, residual …): <note>``), ``done``
    stays ``False``, and whatever part was computed is still written, for inspection.  Rewriting a
    cell replaces it.

    Raises
    ------
    IndexError
        For a cell outside the grid.
    TypeError, ValueError
        For results of the wrong kind, number or shape: nothing is written.
    """
    spec.check_cell(i_c, i_signal)
    region = _region(spec, int(i_c), int(i_signal))
    writes = {
        name: (tuple(region[dim] for dim in dims), values)
        for name, (dims, values) in _cell_arrays(spec, theory, montecarlo).items()
    }
    done = writes.pop("done")
    zarr_sync(_write_arrays(os.fspath(path), writes, done))


async def _write_arrays(
    where: str,
    writes: Mapping[str, tuple[tuple[slice, ...], np.ndarray]],
    done: tuple[tuple[slice, ...], np.ndarray],
) -> None:
    """Write the cell's arrays concurrently, then ``done`` once they are all stored.

    With zarr itself, from one opened group: xarray's ``to_zarr`` opens the group and re-reads every
    array's metadata per call, and writes the arrays one after the other (0.18 s for a tiny cell,
    most of its cost).  The template fixed the dtypes, fill values and encodings; the cell's
    values are already in them.  Never re-consolidated (see the module docstring).
    """
    group = await zarr.api.asynchronous.open_group(store=where, mode="r+", use_consolidated=False)

    async def write(name: str, selection: tuple[slice, ...], values: np.ndarray) -> None:
        if values.size:
            array = await group.getitem(name)
            if not isinstance(array, zarr.AsyncArray):
                raise StoreError(where, f"{name!r} is not an array")
            await array.setitem(selection, values)

    await asyncio.gather(*(write(name, *item) for name, item in writes.items()))
    await write("done", *done)


# ----------------------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------------------


def pending_cells(path: str | os.PathLike[str], *, failed: bool = False) -> list[tuple[int, int]]:
    """The cells ``(i_c, i_signal)`` that a run must compute, in grid order.

    Parameters
    ----------
    path : str or path-like
        The store.
    failed : bool, default False
        Also the cells with a point recorded as failed (``hessweep run --retry-failed``).  Without
        it, only cells with a pending point: not done and not failed, i.e. never written, or
        written in part by a process that died before the point's ``done``.
    """
    where = os.fspath(path)
    _attributes(where)
    group = _group(where)
    done = _array(group, "done")
    status = _array(group, "status")
    todo = ~done if failed else ~done & (status != STATUS_FAILED)
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(todo.any(axis=(1, 3))), strict=True)]


def failed_cells(path: str | os.PathLike[str]) -> dict[tuple[int, int], int]:
    """The cells ``(i_c, i_signal)`` holding points recorded as failed, and how many, in grid order."""
    where = os.fspath(path)
    _attributes(where)
    group = _group(where)
    failed = (_array(group, "status") == STATUS_FAILED) & ~_array(group, "done")
    per_cell = failed.sum(axis=(1, 3))
    return {(int(i), int(j)): int(per_cell[i, j]) for i, j in zip(*np.nonzero(per_cell), strict=True)}


def summary(path: str | os.PathLike[str], *, max_errors: int = 20) -> dict[str, Any]:
    """Counts of done, failed and pending points, overall and along each axis.

    A point is ``(c, loss, signal, trial)``; ``done + failed + pending == total``.

    Returns
    -------
    dict
        Plain JSON-ready data::

            {"name": str, "created": str (UTC ISO), "store": str,
             "shape": {"c": n, "loss": n, "signal": n, "trial": n},
             "total": int, "done": int, "failed": int, "pending": int,
             "cells": {"total": int, "done": int, "failed": int, "pending": int},
             "axes": {"c": [{"value": 0.5, "total": .., "done": .., "failed": .., "pending": ..}, …],
                      "loss": [{"value": "logistic", …}, …], "signal": [...]},
             "errors": [{"c": .., "loss": .., "signal": .., "trial": .., "message": ..}, …]}

        A cell ``(c, signal)`` is done when all its points are, pending when any of its points
        is (a run computes it), failed otherwise (only ``hessweep run --retry-failed`` computes
        it again).  ``errors`` lists at most ``max_errors`` failed points, in grid order.
    """
    where = os.fspath(path)
    attrs = _attributes(where)
    group = _group(where)
    status = _array(group, "status")
    done = _array(group, "done")
    failed_at = np.argwhere(status == STATUS_FAILED)[:max_errors]
    error = group["error"]
    assert isinstance(error, zarr.Array)
    messages = [str(error[tuple(int(i) for i in point)]) for point in failed_at]
    axis_values = {name: _array(group, name).tolist() for name in ("c", "loss", "signal")}
    is_done = done
    is_failed = (status == STATUS_FAILED) & ~is_done
    is_pending = ~is_done & ~is_failed

    def counts(mask_axes: tuple[int, ...]) -> dict[str, Any]:
        return {
            "total": np.ones_like(is_done).sum(axis=mask_axes),
            "done": is_done.sum(axis=mask_axes),
            "failed": is_failed.sum(axis=mask_axes),
            "pending": is_pending.sum(axis=mask_axes),
        }

    axes: dict[str, list[dict[str, Any]]] = {}
    for axis, name in enumerate(("c", "loss", "signal")):
        per = counts(tuple(a for a in range(4) if a != axis))
        axes[name] = [
            {"value": value, **{key: int(per[key][i]) for key in per}}
            for i, value in enumerate(axis_values[name])
        ]
    cell_done = is_done.all(axis=(1, 3))
    cell_pending = is_pending.any(axis=(1, 3))
    names = ("c", "loss", "signal", "trial")
    return {
        "name": json.loads(attrs["spec"])["name"],
        "created": attrs.get("created", ""),
        "store": where,
        "shape": dict(zip(names, (int(n) for n in status.shape), strict=True)),
        "total": int(status.size),
        "done": int(is_done.sum()),
        "failed": int(is_failed.sum()),
        "pending": int(is_pending.sum()),
        "cells": {
            "total": int(cell_done.size),
            "done": int(cell_done.sum()),
            "failed": int((~cell_done & ~cell_pending).sum()),
            "pending": int(cell_pending.sum()),
        },
        "axes": axes,
        "errors": [
            {
                "c": axis_values["c"][int(point[0])],
                "loss": axis_values["loss"][int(point[1])],
                "signal": axis_values["signal"][int(point[2])],
                "trial": int(point[3]),
                "message": message,
            }
            for point, message in zip(failed_at, messages, strict=True)
        ],
    }


# ----------------------------------------------------------------------------------------------
# One run at a time
# ----------------------------------------------------------------------------------------------


@contextmanager
def lock(path: str | os.PathLike[str]) -> Iterator[str]:
    """Hold the lock file of a store, ``<store>.lock``, for the length of a run.

    The lock is an advisory ``flock`` on that file, which holds the owner's host, pid and start
    time.  The kernel drops the lock when its process dies, however it dies, so a lock left by a
    dead run is taken over without a question; a live run's lock refuses the second one.  The file
    is removed when the run ends.

    Yields
    ------
    str
        The lock file's path.

    Raises
    ------
    StoreError
        If another live process holds the lock: the message names its host, pid and start time.
    """
    where = os.fspath(path)
    lock_path = where.rstrip(os.sep) + ".lock"
    Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _lock_owner(descriptor)
            os.close(descriptor)
            raise StoreError(
                where,
                f"in use by another hessweep run ({owner}); wait for it, or stop it, and run again",
            ) from None
        # The file may have been removed (by the run that held it, as it ended) between our open
        # and our lock: then we hold a lock on a file nobody else sees, and must start again.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(descriptor)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(UTC).isoformat()}
    os.ftruncate(descriptor, 0)
    os.write(descriptor, json.dumps(holder).encode())
    try:
        yield lock_path
    finally:
        os.unlink(lock_path)
        os.close(descriptor)


def _lock_owner(descriptor: int) -> str:
    """The holder of a lock file as ``host HOST, pid PID, since TIME``, or what is known of it."""
    try:
        owner = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        return f"host {owner['host']}, pid {owner['pid']}, since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its owner not yet written"


# ----------------------------------------------------------------------------------------------
# Integrity
# ----------------------------------------------------------------------------------------------


def verify(path: str | os.PathLike[str]) -> tuple[int, list[str]]:
    """Check every point of a cube against what its ``done`` and ``status`` promise.

    A done point must have ``status`` done and no ``error``; its Monte Carlo result must be
    complete (``dense``: ``p`` finite eigenvalues, ascending; ``lanczos``: finite ascending nodes
    followed only by NaN padding, non-negative weights summing to 1, finite extreme Ritz values); and
    its theory result must be there (finite, increasing abscissae, a finite non-negative density, a
    finite mass, at least one bulk, edges that are not NaN).  A failed point must say why (``error``);
    a point not done must not claim ``status`` done.

    Reads the whole cube into memory, variable by variable.

    Returns
    -------
    checked : int
        The number of done points checked.
    problems : list of str
        One line per problem, naming the point, e.g.
        ``c[0] = 0.5, loss = logistic, signal[2] = 1, trial 1: eigenvalues not ascending``.

    Raises
    ------
    StoreError
        If the store is missing or not a hessweep cube.
    """
    where = os.fspath(path)
    attrs = _attributes(where)
    group = _group(where)
    method = attrs.get("montecarlo_method", "dense")
    done = _array(group, "done")
    status = _array(group, "status")
    error = _array(group, "error")
    axes = {name: _array(group, name).tolist() for name in ("c", "loss", "signal")}
    problems: list[str] = []

    def name(point: tuple[int, ...]) -> str:
        i_c, i_loss, i_signal, trial = point
        return (
            f"c[{i_c}] = {axes['c'][i_c]:g}, loss = {axes['loss'][i_loss]}, "
            f"signal[{i_signal}] = {axes['signal'][i_signal]:g}, trial {trial}"
        )

    def report(mask: np.ndarray, what: str) -> None:
        for point in np.argwhere(mask):
            problems.append(f"{name(tuple(int(i) for i in point))}: {what}")

    report(done & (status != STATUS_DONE), "done, but its status is not done")
    report(done & (error != ""), "done, but it has an error message")
    report(~done & (status == STATUS_DONE), "status done, but not marked done")
    report(done & ~_array(group, "converged")[..., None], "done, but its theory did not converge")
    report((status == STATUS_FAILED) & (error == ""), "failed without an error message")

    for what, bad in _montecarlo_problems(group, method):
        report(done & bad, what)
    # Theory variables have no trial axis: a problem there is every done trial's problem.
    for what, bad in _theory_problems(group):
        report(done & bad[..., None], what)
    return int(done.sum()), problems


def _montecarlo_problems(group: zarr.Group, method: str) -> list[tuple[str, np.ndarray]]:
    """(problem, mask over (c, loss, signal, trial)) for the Monte Carlo variables."""
    if method == "dense":
        eigenvalues = _array(group, "eigenvalues")
        with np.errstate(invalid="ignore"):
            descending = np.any(np.diff(eigenvalues, axis=-1) < 0, axis=-1)
        return [
            ("eigenvalues missing or not finite", ~np.all(np.isfinite(eigenvalues), axis=-1)),
            ("eigenvalues not ascending", descending),
        ]
    nodes = _array(group, "mc_nodes")
    weights = _array(group, "mc_weights")
    present = ~np.isnan(nodes)
    # NaN padding only after the last node: the present entries form a prefix.
    padded_inside = np.any(~present[..., :-1] & present[..., 1:], axis=-1)
    with np.errstate(invalid="ignore"):
        descending = np.any(np.diff(nodes, axis=-1) < 0, axis=-1)
        bad_weights = np.any(present & ~(weights >= 0), axis=-1)
    total = np.where(present, weights, 0.0).sum(axis=-1)
    return [
        ("quadrature missing", ~present[..., 0]),
        (
            "quadrature nodes not finite, or NaN before the last node",
            padded_inside | np.any(np.isinf(nodes), -1),
        ),
        ("quadrature nodes not ascending", descending),
        ("quadrature weights negative or missing", bad_weights),
        ("quadrature weights do not sum to 1", ~(np.abs(total - 1.0) <= 1e-9)),
        ("extreme Ritz values not finite", ~np.all(np.isfinite(_array(group, "mc_extreme")), axis=-1)),
    ]


def _theory_problems(group: zarr.Group) -> list[tuple[str, np.ndarray]]:
    """(problem, mask over (c, loss, signal)) for the theory variables."""
    x = _array(group, "density_x")
    density = _array(group, "density")
    with np.errstate(invalid="ignore"):
        unordered = ~np.all(np.diff(x, axis=-1) > 0, axis=-1)
        negative = ~np.all(density >= 0, axis=-1)
    return [
        ("theory abscissae missing, not finite or not increasing", ~np.all(np.isfinite(x), -1) | unordered),
        ("theory density missing, not finite or negative", ~np.all(np.isfinite(density), -1) | negative),
        ("theory mass missing", ~np.isfinite(_array(group, "mass"))),
        ("no bulk in the theory result", _array(group, "bulk_count") < 1),
        (
            "theory edges missing",
            np.isnan(_array(group, "edge_left")) | np.isnan(_array(group, "edge_right")),
        ),
    ]


# ----------------------------------------------------------------------------------------------
# Implementation
# ----------------------------------------------------------------------------------------------


def _variables(spec: SweepSpec) -> dict[str, tuple[tuple[str, ...], np.dtype[Any]]]:
    """(dims, dtype) of every data variable of the sweep's cube, in writing order (``done`` last)."""
    return {**_METHOD_VARIABLES[spec.montecarlo.method], **_COMMON_VARIABLES}


def _sizes(spec: SweepSpec) -> dict[str, int]:
    n_c, n_loss, n_signal, trials = spec.shape
    sizes = {"c": n_c, "loss": n_loss, "signal": n_signal, "trial": trials}
    if spec.montecarlo.method == "dense":
        sizes["eig"] = spec.p
    else:
        sizes["node"] = spec.montecarlo.probes * spec.montecarlo.steps
    return {
        **sizes,
        "x": spec.theory.points,
        "k": 2 * spec.montecarlo.k,
        "target": len(TARGETS),
        "spike_index": MAX_SPIKES,
    }


def _chunks(spec: SweepSpec, dims: tuple[str, ...]) -> tuple[int, ...]:
    """One cell wide along ``c`` and ``signal``, whole along the rest (at least 1: Zarr's minimum)."""
    sizes = _sizes(spec)
    return tuple(1 if dim in _CELL_DIMS else max(1, sizes[dim]) for dim in dims)


def _fill(dtype: np.dtype[Any]) -> Any:
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "T":
        return ""
    return dtype.type(0)


def _template(spec: SweepSpec) -> xr.Dataset:
    # Imported here: only the template needs dask (writers and readers do not pay for its import).
    import dask.array as da

    sizes = _sizes(spec)
    k = spec.montecarlo.k
    coords: dict[str, tuple[str, np.ndarray]] = {
        "c": ("c", np.array(spec.grid.c, dtype=np.float64)),
        "loss": ("loss", np.array(spec.grid.loss, dtype=_STRING)),
        "signal": ("signal", np.array(spec.grid.signal, dtype=np.float64)),
        "trial": ("trial", np.arange(spec.trials, dtype=np.int64)),
        **{dim: (dim, np.arange(sizes[dim], dtype=np.int64)) for dim in ("eig", "node") if dim in sizes},
        "x": ("x", np.arange(spec.theory.points, dtype=np.int64)),
        "k": ("k", np.arange(2 * k, dtype=np.int64)),
        "side": ("k", np.array([_SIDES[0]] * k + [_SIDES[1]] * k, dtype=_STRING)),
        "rank": ("k", np.concatenate([np.arange(k), np.arange(k)]).astype(np.int64)),
        "target": ("target", np.array(TARGETS, dtype=_STRING)),
        "spike_index": ("spike_index", np.arange(MAX_SPIKES, dtype=np.int64)),
    }
    variables = {}
    for name, (dims, dtype) in _variables(spec).items():
        shape = tuple(sizes[dim] for dim in dims)
        # One dask chunk per variable: nothing is computed (to_zarr(compute=False)), and a graph of
        # one chunk per cell costs seconds to build for a sweep of 1000 cells.  The Zarr chunks
        # (one per cell) come from the encoding.
        array = da.full(shape, _fill(dtype), dtype=dtype, chunks=-1)
        variables[name] = xr.Variable(dims, array, attrs={"description": _DESCRIPTIONS[name]})
    return xr.Dataset(variables, coords=coords, attrs=_attrs(spec))


def _attrs(spec: SweepSpec) -> dict[str, Any]:
    from pipeline import __version__

    versions = {"hessweep": __version__}
    for library in _LIBRARIES:
        try:
            versions[library] = version(library)
        except PackageNotFoundError:  # pragma: no cover - every library is a dependency
            versions[library] = "unknown"
    return {
        "title": f"hessweep cube of sweep {spec.name!r}",
        "cube_format": CUBE_FORMAT,
        "montecarlo_method": spec.montecarlo.method,
        "sweep_name": spec.name,
        "sweep_yaml": spec.source_text,
        "spec": json.dumps(spec.to_dict(), sort_keys=True),
        "seed": spec.seed,
        "versions": versions,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "status_codes": {
            "pending": STATUS_PENDING,
            "done": STATUS_DONE,
            "failed": STATUS_FAILED,
        },
        "fill_values": "NaN (float), false (bool), 0 (integers; status: pending), '' (strings)",
    }


def _attributes(where: str) -> Mapping[str, Any]:
    """The root attributes of a hessweep cube, or a :class:`StoreError`."""
    if not os.path.exists(where):
        raise StoreError(where, "no such store")
    try:
        group = _group(where)
    except (FileNotFoundError, ValueError, zarr.errors.BaseZarrError) as error:
        raise StoreError(where, f"not a Zarr v3 store ({error})") from None
    attrs = dict(group.attrs)
    if "spec" not in attrs or "cube_format" not in attrs:
        raise StoreError(where, f"not a hessweep cube (format {CUBE_FORMAT})")
    if attrs["cube_format"] not in _READABLE_FORMATS:
        raise StoreError(
            where,
            f"a cube of format {attrs['cube_format']}, and this hessweep reads formats "
            f"{', '.join(map(str, _READABLE_FORMATS))}: run the sweep into a new store",
        )
    return attrs


def _group(where: str) -> zarr.Group:
    # The root zarr.json (attributes) and one array's zarr.json per array read: the consolidated
    # metadata is not needed, and a foreign store without it is then told "not a hessweep cube".
    return zarr.open_group(where, mode="r", zarr_format=3, use_consolidated=False)


def _missing_arrays(where: str, spec: SweepSpec) -> list[str]:
    """The sweep's arrays absent from the store's consolidated metadata (all of them without it).

    The consolidated metadata is the last thing the template writes (see :func:`create_store`).
    """
    try:
        group = zarr.open_group(where, mode="r", zarr_format=3, use_consolidated=True)
        metadata = group.metadata.consolidated_metadata
    except (FileNotFoundError, ValueError, zarr.errors.BaseZarrError):
        metadata = None
    if metadata is None:
        return ["consolidated metadata"]
    expected = [*_variables(spec), *_sizes(spec)]
    return [name for name in expected if name not in metadata.metadata]


def _remove(where: str) -> None:
    """Remove a store (a directory) or whatever else is at its path."""
    if os.path.isdir(where) and not os.path.islink(where):
        shutil.rmtree(where)
    else:
        os.unlink(where)


def _array(group: zarr.Group, name: str) -> np.ndarray:
    array = group[name]
    assert isinstance(array, zarr.Array)
    return np.asarray(array[...])


def _cell_arrays(
    spec: SweepSpec,
    theory: Sequence[TheoryResult | CellFailure],
    montecarlo: Sequence[Sequence[MonteCarloResult | LanczosResult | CellFailure] | CellFailure],
) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The cell's region of every variable, shaped ``(1, n_loss, 1, …)``, checked first."""
    _, n_loss, _, trials = spec.shape
    sizes = _sizes(spec)
    k = spec.montecarlo.k
    if len(theory) != n_loss:
        raise ValueError(f"theory: expected {n_loss} results (one per loss), got {len(theory)}")
    if len(montecarlo) != trials:
        raise ValueError(f"montecarlo: expected {trials} entries (one per trial), got {len(montecarlo)}")
    for i_loss, outcome in enumerate(theory):
        _check_theory(outcome, spec, f"theory[{i_loss}]")
    per_trial: list[list[MonteCarloResult | LanczosResult | CellFailure]] = []
    for trial, entry in enumerate(montecarlo):
        if isinstance(entry, CellFailure):
            per_trial.append([entry] * n_loss)
            continue
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
            raise TypeError(
                f"montecarlo[{trial}]: expected a list of results per loss or a CellFailure, "
                f"not {type(entry).__name__}"
            )
        if len(entry) != n_loss:
            raise ValueError(
                f"montecarlo[{trial}]: expected {n_loss} results (one per loss), got {len(entry)}"
            )
        for i_loss, sample in enumerate(entry):
            _check_montecarlo(sample, spec, f"montecarlo[{trial}][{i_loss}]")
        per_trial.append(list(entry))

    variables = _variables(spec)
    arrays: dict[str, np.ndarray] = {}
    for name, (dims, dtype) in variables.items():
        shape = tuple(1 if dim in _CELL_DIMS else sizes[dim] for dim in dims)
        arrays[name] = np.full(shape, _fill(dtype), dtype=dtype)
    errors = [["" for _ in range(trials)] for _ in range(n_loss)]

    for i_loss, result in enumerate(theory):
        at = (0, i_loss, 0)
        if isinstance(result, CellFailure):
            for trial in range(trials):
                errors[i_loss][trial] = f"theory: {result.message}"
            continue
        n_spikes = len(result.spikes)
        arrays["density"][at] = result.density
        arrays["density_x"][at] = result.x
        arrays["edge_left"][at] = result.edge_left
        arrays["edge_right"][at] = result.edge_right
        arrays["bulk_count"][at] = result.edges.shape[0]
        arrays["spike"][0, i_loss, 0, :n_spikes] = result.spikes
        for i_target, target in enumerate(TARGETS):
            arrays["spike_align"][0, i_loss, 0, :n_spikes, i_target] = result.spike_align[target]
        arrays["atom_zero"][at] = result.atom_zero
        arrays["negative_fraction"][at] = result.negative_fraction
        arrays["mass"][at] = result.mass
        arrays["converged"][at] = result.converged
        arrays["residual"][at] = result.residual
        arrays["spikes_defined"][at] = result.spikes_defined
        arrays["note"][at] = result.note
        if not result.converged:
            # Written for inspection, never marked done (see write_cell).
            for trial in range(trials):
                errors[i_loss][trial] = f"theory: {_unconverged(result)}"

    for trial, results in enumerate(per_trial):
        for i_loss, mc in enumerate(results):
            point = (0, i_loss, 0, trial)
            if isinstance(mc, CellFailure):
                message = f"montecarlo: {mc.message}"
                errors[i_loss][trial] = (
                    f"{errors[i_loss][trial]}; {message}" if errors[i_loss][trial] else message
                )
                continue
            if isinstance(mc, MonteCarloResult):
                arrays["eigenvalues"][point] = mc.eigenvalues
            else:
                _put_lanczos(arrays, point, mc, theory[i_loss])
            for i_target, target in enumerate(TARGETS):
                arrays["mc_align"][0, i_loss, 0, trial, :k, i_target] = mc.align_bottom[target]
                arrays["mc_align"][0, i_loss, 0, trial, k:, i_target] = mc.align_top[target]
            arrays["mc_negative_fraction"][point] = mc.negative_fraction

    for i_loss in range(n_loss):
        for trial in range(trials):
            point = (0, i_loss, 0, trial)
            failed = bool(errors[i_loss][trial])
            arrays["status"][point] = STATUS_FAILED if failed else STATUS_DONE
            arrays["error"][point] = errors[i_loss][trial]
            arrays["done"][point] = not failed
    return {name: (variables[name][0], array) for name, array in arrays.items()}


def _unconverged(result: TheoryResult) -> str:
    """Why a theory result that did not converge is not trusted, for its points' ``error``."""
    why = f"did not converge (mass {result.mass:.6g}, residual {result.residual:.3g})"
    return f"{why}: {result.note}" if result.note else why


def _put_lanczos(
    arrays: dict[str, np.ndarray],
    point: tuple[int, int, int, int],
    result: LanczosResult,
    theory: TheoryResult | CellFailure,
) -> None:
    """A matrix-free result's variables at ``point``; its density on the theory's abscissae."""
    size = result.nodes.size
    arrays["mc_nodes"][(*point, slice(0, size))] = result.nodes
    arrays["mc_weights"][(*point, slice(0, size))] = result.weights
    if isinstance(theory, TheoryResult):
        arrays["mc_density"][point] = result.density(theory.x)
    arrays["mc_extreme"][point] = np.concatenate([result.bottom, result.top])
    arrays["mc_residual"][point] = np.concatenate([result.residual_bottom, result.residual_top])
    arrays["mc_atom_zero"][point] = result.atom_zero


def _check_theory(result: object, spec: SweepSpec, where: str) -> None:
    if isinstance(result, CellFailure):
        return
    if not isinstance(result, TheoryResult):
        raise TypeError(f"{where}: expected a TheoryResult or a CellFailure, not {type(result).__name__}")
    points = spec.theory.points
    for name in ("x", "density"):
        shape = np.shape(getattr(result, name))
        if shape != (points,):
            raise ValueError(f"{where}.{name}: expected shape ({points},) (theory.points), got {shape}")
    spikes = np.shape(result.spikes)
    if len(spikes) != 1 or spikes[0] > MAX_SPIKES:
        raise ValueError(
            f"{where}.spikes: expected at most {MAX_SPIKES} spikes in a 1-d array, got shape {spikes}"
        )
    for target in TARGETS:
        if target not in result.spike_align:
            raise ValueError(f"{where}.spike_align: no entry for target {target!r}")
        shape = np.shape(result.spike_align[target])
        if shape != spikes:
            raise ValueError(
                f"{where}.spike_align[{target!r}]: expected shape {spikes} (one per spike), got {shape}"
            )
    if np.ndim(result.edges) != 2 or np.shape(result.edges)[1:] != (2,) or len(result.edges) == 0:
        raise ValueError(f"{where}.edges: expected shape (n_bulks >= 1, 2), got {np.shape(result.edges)}")


def _check_montecarlo(result: object, spec: SweepSpec, where: str) -> None:
    if isinstance(result, CellFailure):
        return
    options = spec.montecarlo
    expected = MonteCarloResult if options.method == "dense" else LanczosResult
    if not isinstance(result, expected):
        raise TypeError(
            f"{where}: expected a {expected.__name__} (montecarlo.method: {options.method}) or a "
            f"CellFailure, not {type(result).__name__}"
        )
    if isinstance(result, MonteCarloResult):
        shape = np.shape(result.eigenvalues)
        if shape != (spec.p,):
            raise ValueError(f"{where}.eigenvalues: expected shape ({spec.p},) (p), got {shape}")
    elif isinstance(result, LanczosResult) and result.nodes.size > options.probes * options.steps:
        raise ValueError(
            f"{where}.nodes: expected at most probes × steps = {options.probes * options.steps}, "
            f"got {result.nodes.size}"
        )
    k = options.k
    for side in ("align_bottom", "align_top"):
        alignments = getattr(result, side)
        for target in TARGETS:
            if target not in alignments:
                raise ValueError(f"{where}.{side}: no entry for target {target!r}")
            shape = np.shape(alignments[target])
            if shape != (k,):
                raise ValueError(
                    f"{where}.{side}[{target!r}]: expected shape ({k},) (montecarlo.k), got {shape}"
                )


def _region(spec: SweepSpec, i_c: int, i_signal: int) -> dict[str, slice]:
    """Explicit slices of one cell along every dimension."""
    region = {dim: slice(0, size) for dim, size in _sizes(spec).items()}
    region["c"] = slice(i_c, i_c + 1)
    region["signal"] = slice(i_signal, i_signal + 1)
    return region
