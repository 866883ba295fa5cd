"""The result cube: a Zarr v3 store of every grid point's theory and Monte Carlo results.

Only this module knows Zarr.  A sweep's family declares its cube (:meth:`Family.layout
<pipeline.families.base.Family.layout>`): the point dimensions (for the GLM family ``c``, ``loss``,
``signal``, ``trial``; its variables are listed in :mod:`pipeline.families.glm`), the cell
dimensions among them, the other dimensions, coordinates and data variables.  This module adds the
bookkeeping ``status``, ``error`` and ``done`` per point, and the attributes (the sweep, versions,
seed, family).

**The unit of writing is a cell** (GLM: ``(i_c, i_signal)``): every variable is chunked one cell wide
along the cell dimensions and full along every other dimension, so one :func:`write_cell` call writes
whole chunks that no other call touches, and cells can be written from any number of processes in
any order.  A write stores the data, ``status`` and ``error`` first, then ``done``: a point whose
``done`` is set has complete data, whatever happened to the writer afterwards.

**Not run versus NaN.**  Zarr v3 does not store a chunk equal to the fill value, and reads a chunk
never written as the fill value; float results can be NaN legitimately (an alignment with a zero
target, padded spikes).  So the data never tells "not run" from "ran": only ``status`` and ``done``
do.  The fill values are NaN (floats), ``False`` (bools), ``0`` (integers) and ``""`` (strings), so
an unwritten point reads as ``status == STATUS_PENDING``, ``done == False``.

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
from pipeline.families import CellData, CellFailure, Layout, family_of
from pipeline.families.base import STRING, Spec, fill_value
from pipeline.families.glm import MAX_SPIKES
from pipeline.sweep import spec_from_dict

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
#: Version of the cube layout, in the ``cube_format`` attribute (2: ``bulk_count`` added; 3: the
#: Monte Carlo variables depend on ``montecarlo.method``, named in the ``montecarlo_method`` attribute).
CUBE_FORMAT = 3
# Formats this version reads and resumes: a format-2 cube is a format-3 dense cube.
_READABLE_FORMATS = (2, 3)

_LIBRARIES = ("numpy", "scipy", "dask", "distributed", "xarray", "zarr")
# Where create_store builds a template before renaming it to the store's path.
_PARTIAL = ".partial"
# The engine's bookkeeping variables over the point dimensions, after the family's: `done` last.
_BOOKKEEPING: dict[str, tuple[np.dtype[Any], str]] = {
    "status": (np.dtype(np.int8), "0 pending, 1 done, 2 failed"),
    "error": (STRING, "why the point failed ('' unless status == 2)"),
    "done": (np.dtype(np.bool_), "the point's data is complete (written last)"),
}


# ----------------------------------------------------------------------------------------------
# Creation and checks
# ----------------------------------------------------------------------------------------------


def create_store(path: str | os.PathLike[str], spec: Spec, *, overwrite: bool = False) -> None:
    """Create the empty cube of a sweep: every variable's metadata, the coordinates and attributes.

    Run it once, in one process, before any :func:`write_cell`.  Every point is pending
    (``status == 0``, ``done == False``); no data chunk is written.

    Parameters
    ----------
    path : str or path-like
        A directory, e.g. ``results/<name>.zarr``; its parent is created if needed.
    spec : Spec
        The sweep; its family's layout fixes the cube, and it is stored in the attributes
        (``spec``, as JSON of its ``to_dict()``, and ``sweep_yaml``, the source text).
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
    layout = family_of(spec).layout(spec)
    template = _template(spec, layout)
    encoding = {name: {"chunks": layout.chunks(dims)} for name, (dims, _, _) in _variables(layout).items()}
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


def check_store(path: str | os.PathLike[str], spec: Spec) -> None:
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
        stored = spec_from_dict(json.loads(attrs["spec"]))
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


def write_cell(path: str | os.PathLike[str], spec: Spec, cell: Sequence[int], data: CellData) -> None:
    """Write one cell: every variable's block, ``status`` and ``error``, then ``done``.

    Parameters
    ----------
    path : str or path-like
        A store made by :func:`create_store` for ``spec``.
    spec : Spec
        The sweep (for the layout; it is not compared with the store's, see :func:`check_store`).
    cell : sequence of int
        The cell's index along each cell dimension (GLM: ``(i_c, i_signal)``).
    data : CellData
        The family's blocks (:meth:`Family.assemble <pipeline.families.base.Family.assemble>`).
        A point whose error is ``""`` is done; any other point is failed (``status`` 2, its error
        stored, ``done`` false), its computed data written all the same, for inspection.
        Rewriting a cell replaces it.

    Raises
    ------
    IndexError
        For a cell outside the grid.
    ValueError
        For blocks of the wrong shape or set of variables: nothing is written.
    """
    layout = family_of(spec).layout(spec)
    region = layout.region(cell)
    writes = {}
    for name, (dims, dtype, _) in _variables(layout).items():
        if name in _BOOKKEEPING:
            continue
        if name not in data.arrays:
            raise ValueError(f"cell {layout.describe_cell(cell)}: no block of {name!r}")
        values = np.asarray(data.arrays[name], dtype=dtype)
        shape = layout.block_shape(dims)
        if values.shape != shape:
            raise ValueError(f"{name}: expected a block of shape {shape}, got {values.shape}")
        writes[name] = (tuple(region[dim] for dim in dims), values)
    errors = np.asarray(data.errors, dtype=STRING)
    points = tuple(region[dim] for dim in layout.point_dims)
    expected = layout.block_shape(layout.point_dims)
    if errors.shape != expected:
        raise ValueError(f"errors: expected shape {expected}, got {errors.shape}")
    failed = errors != ""
    writes["status"] = (points, np.where(failed, STATUS_FAILED, STATUS_DONE).astype(np.int8))
    writes["error"] = (points, errors)
    zarr_sync(_write_arrays(os.fspath(path), writes, (points, ~failed)))


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


def pending_cells(path: str | os.PathLike[str], *, failed: bool = False) -> list[tuple[int, ...]]:
    """The cells (GLM: ``(i_c, i_signal)``) that a run must compute, in grid order.

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
    attrs = _attributes(where)
    group = _group(where)
    done = _array(group, "done")
    status = _array(group, "status")
    todo = ~done if failed else ~done & (status != STATUS_FAILED)
    return [tuple(int(i) for i in cell) for cell in np.argwhere(_per_cell(attrs, todo).any(axis=-1))]


def failed_cells(path: str | os.PathLike[str]) -> dict[tuple[int, ...], int]:
    """The cells holding points recorded as failed, and how many, in grid order."""
    where = os.fspath(path)
    attrs = _attributes(where)
    group = _group(where)
    failed = (_array(group, "status") == STATUS_FAILED) & ~_array(group, "done")
    per_cell = _per_cell(attrs, failed).sum(axis=-1)
    return {tuple(int(i) for i in cell): int(per_cell[tuple(cell)]) for cell in np.argwhere(per_cell)}


def _per_cell(attrs: Mapping[str, Any], points: np.ndarray) -> np.ndarray:
    """A mask over the point dimensions as ``(*cell dimensions, the other points of the cell)``."""
    point_dims, cell_dims = _dims(attrs)
    order = [point_dims.index(dim) for dim in cell_dims]
    rest = [axis for axis in range(len(point_dims)) if axis not in order]
    moved = np.transpose(points, order + rest)
    return moved.reshape(*moved.shape[: len(order)], -1)


def _dims(attrs: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The point and cell dimensions of a cube (a cube without them is a GLM cube of format 2 or 3)."""
    point_dims = list(attrs.get("point_dims", ("c", "loss", "signal", "trial")))
    return point_dims, list(attrs.get("cell_dims", ("c", "signal")))


def summary(path: str | os.PathLike[str], *, max_errors: int = 20) -> dict[str, Any]:
    """Counts of done, failed and pending points, overall and along each axis.

    A point is a tuple of indices along the point dimensions (GLM: ``(c, loss, signal, trial)``);
    ``done + failed + pending == total``.

    Returns
    -------
    dict
        Plain JSON-ready data::

            {"name": str, "created": str (UTC ISO), "store": str,
             "shape": {"c": n, "loss": n, "signal": n, "trial": n},
             "total": int, "done": int, "failed": int, "pending": int,
             "cells": {"total": int, "done": int, "failed": int, "pending": int},
             "axes": {"c": [{"value": 0.5, "total": .., "done": .., "failed": .., "pending": ..}, …],
                      "loss": [{"value": "logistic", …}, …], "signal": [...]},   # but trial
             "errors": [{"c": .., "loss": .., "signal": .., "trial": .., "message": ..}, …],
             "remarks": [{"what": str, "count": int}, …]}

        (The keys of ``shape``, ``axes`` and ``errors`` are the point dimensions, here the GLM's.)
        A cell (GLM: ``(c, signal)``) is done when all its points are, pending when any of its points
        is (a run computes it), failed otherwise (only ``hessweep run --retry-failed`` computes
        it again).  ``errors`` lists at most ``max_errors`` failed points, in grid order;
        ``remarks`` counts the done points of each of the family's remarks (:meth:`Family.remarks
        <pipeline.families.base.Family.remarks>`, e.g. a network run kept unconverged) that has any.
    """
    where = os.fspath(path)
    attrs = _attributes(where)
    group = _group(where)
    point_dims, _ = _dims(attrs)
    status = _array(group, "status")
    is_done = _array(group, "done")
    failed_at = np.argwhere((status == STATUS_FAILED) & ~is_done)[:max_errors]
    error = group["error"]
    assert isinstance(error, zarr.Array)
    messages = [str(error[tuple(int(i) for i in point)]) for point in failed_at]
    values = {name: _array(group, name).tolist() for name in point_dims}
    is_failed = (status == STATUS_FAILED) & ~is_done
    is_pending = ~is_done & ~is_failed
    masks = {"done": is_done, "failed": is_failed, "pending": is_pending}

    # Every point dimension but the trials (whose counts say little).
    axes: dict[str, list[dict[str, Any]]] = {}
    for axis, name in enumerate(point_dims):
        if name == "trial":
            continue
        others = tuple(a for a in range(len(point_dims)) if a != axis)
        per = {key: mask.sum(axis=others) for key, mask in masks.items()}
        total = status.size // status.shape[axis]
        axes[name] = [
            {"value": value, "total": total, **{key: int(per[key][i]) for key in per}}
            for i, value in enumerate(values[name])
        ]
    cell_done = _per_cell(attrs, is_done).all(axis=-1)
    cell_pending = _per_cell(attrs, is_pending).any(axis=-1)
    spec = spec_from_dict(json.loads(attrs["spec"]))
    remarks = family_of(spec).remarks(spec, lambda variable: _array(group, variable))
    return {
        "name": json.loads(attrs["spec"])["name"],
        "created": attrs.get("created", ""),
        "store": where,
        "shape": dict(zip(point_dims, (int(n) for n in status.shape), strict=True)),
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
                **{name: values[name][int(index)] for name, index in zip(point_dims, point, strict=True)},
                "message": message,
            }
            for point, message in zip(failed_at, messages, strict=True)
        ],
        "remarks": [
            {"what": what, "count": int((is_done & mask).sum())}
            for what, mask in remarks
            if (is_done & mask).any()
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

    A done point must have ``status`` done and no ``error``, and its results what its family
    promises (:meth:`Family.problems <pipeline.families.base.Family.problems>`; GLM: a complete
    Monte Carlo result — ``dense``: ``p`` finite eigenvalues, ascending; ``lanczos``: finite
    ascending nodes followed only by NaN padding, non-negative weights summing to 1, finite extreme
    Ritz values — and a converged theory result: finite, increasing abscissae, a finite
    non-negative density, a finite mass, at least one bulk, edges that are not NaN).  A failed
    point must say why (``error``); a point not done must not claim ``status`` done.

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
    spec = spec_from_dict(json.loads(attrs["spec"]))
    point_dims, _ = _dims(attrs)
    done = _array(group, "done")
    status = _array(group, "status")
    error = _array(group, "error")
    values = {name: _array(group, name).tolist() for name in point_dims}
    problems: list[str] = []

    def name(point: tuple[int, ...]) -> str:
        parts = []
        for dim, index in zip(point_dims, point, strict=True):
            value = values[dim][index]
            if dim == "trial":
                parts.append(f"trial {index}")
            elif isinstance(value, str):
                parts.append(f"{dim} = {value}")
            else:
                parts.append(f"{dim}[{index}] = {value:g}")
        return ", ".join(parts)

    def report(mask: np.ndarray, what: str) -> None:
        for point in np.argwhere(mask):
            problems.append(f"{name(tuple(int(i) for i in point))}: {what}")

    report(done & (status != STATUS_DONE), "done, but its status is not done")
    report(done & (error != ""), "done, but it has an error message")
    report(~done & (status == STATUS_DONE), "status done, but not marked done")
    report((status == STATUS_FAILED) & (error == ""), "failed without an error message")
    for what, bad in family_of(spec).problems(spec, lambda variable: _array(group, variable)):
        report(done & bad, what)
    return int(done.sum()), problems


# ----------------------------------------------------------------------------------------------
# Implementation
# ----------------------------------------------------------------------------------------------


def _variables(layout: Layout) -> dict[str, tuple[tuple[str, ...], np.dtype[Any], str]]:
    """(dims, dtype, description) of every data variable, in writing order: the family's, then
    ``status``, ``error`` and ``done``."""
    variables = {name: (v.dims, v.dtype, v.description) for name, v in layout.variables.items()}
    for name, (dtype, description) in _BOOKKEEPING.items():
        variables[name] = (layout.point_dims, dtype, description)
    return variables


def _template(spec: Spec, layout: Layout) -> xr.Dataset:
    # Imported here: only the template needs dask (writers and readers do not pay for its import).
    import dask.array as da

    variables = {}
    for name, (dims, dtype, description) in _variables(layout).items():
        shape = tuple(layout.sizes[dim] for dim in dims)
        # One dask chunk per variable: nothing is computed (to_zarr(compute=False)), and a graph of
        # one chunk per cell costs seconds to build for a sweep of 1000 cells.  The Zarr chunks
        # (one per cell) come from the encoding.
        array = da.full(shape, fill_value(dtype), dtype=dtype, chunks=-1)
        variables[name] = xr.Variable(dims, array, attrs={"description": description})
    return xr.Dataset(variables, coords=dict(layout.coords), attrs=_attrs(spec, layout))


def _attrs(spec: Spec, layout: Layout) -> dict[str, Any]:
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
        "family": spec.family,
        "point_dims": list(layout.point_dims),
        "cell_dims": list(layout.cell_dims),
        **layout.attrs,
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


def _missing_arrays(where: str, spec: Spec) -> list[str]:
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
    layout = family_of(spec).layout(spec)
    expected = [*_variables(layout), *layout.coords]
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
