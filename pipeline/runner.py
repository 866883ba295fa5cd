"""The Dask graph of a sweep: submission, progress, resume, retries.

One sweep is a forest of small graphs over the *cells* ``(i_c, i_signal)`` of the cube (the unit
that :mod:`pipeline.store` writes).  An expensive cell gets a graph of its own:

* a theory task per point ``(c, loss, signal)`` calls :func:`pipeline.theory.solve`;
* a Monte Carlo task per draw ``(c, signal, trial)`` makes one :func:`pipeline.montecarlo.draw`
  and analyses it under every loss, so that all losses at one point see the same ``X`` (cheap
  draws: one task for all the trials of the cell);
* a writer task per cell gathers the theory results of all losses and the Monte Carlo results of
  all trials and calls :func:`pipeline.store.write_cell`, which writes the cell's data and then its
  ``done`` mask.  No two tasks write one chunk.

Cheap cells are *batched*: one task computes and writes several whole cells, one after the other,
with the same functions (:func:`cell_task`), so that the scheduler's cost per task stays small
beside the work (see :func:`_plan`).  Either way a cell's results are the same bits.

A computation that raises is tried again inside its task, up to ``attempts`` times in all, and is
then handed to the writer as a :class:`~pipeline.store.CellFailure`: the store records the affected
points as failed and the run goes on.  A worker that dies is Dask's business: its tasks are
rescheduled on the others.

Only this module knows Dask.  The workers' BLAS is pinned to one thread: eigenvalues are
bit-identical only for a fixed BLAS thread count, so pinning is what makes a sweep on one worker,
on two, or on a cluster give the same cube.  Local workers start with :data:`WORKER_ENVIRONMENT`;
workers of an external scheduler (``dask worker``, whose nanny sets the same variables by default,
but not with ``--no-nanny`` or another ``distributed.nanny.pre-spawn-environ``) are pinned when
they join, by a worker plugin that sets BLAS's thread count (:func:`pin_blas_threads`).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from asyncio import CancelledError
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
from dask.base import tokenize
from distributed import Client, Future, LocalCluster, as_completed
from distributed import progress as progress_bar
from distributed.diagnostics.plugin import WorkerPlugin
from threadpoolctl import ThreadpoolController

from pipeline import store
from pipeline.families import CellFailure, family_of
from pipeline.families.base import Part, Spec, attempt

#: A cell: its index along each cell dimension of its family's layout (GLM: ``(i_c, i_signal)``).
Cell = tuple[int, ...]

__all__ = ["WORKER_ENVIRONMENT", "RunReport", "pin_blas_threads", "run_sweep"]

#: Environment of every local worker process, set before the process starts (so before numpy
#: loads): one BLAS/OpenMP thread per worker, one worker thread per core.
WORKER_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
# The writers run first among the ready tasks, so that cells are finished (and survive an
# interrupted run) one after another rather than all at the end.
_WRITER_PRIORITY = 10
# Batching of whole cells (see _plan).  A task costs the scheduler, the nannies and the client a
# few milliseconds of CPU, on the cores the workers use, and a worker a round trip to the scheduler:
# a task of at least this many (estimated) seconds keeps that near 1% of the work.
_BATCH_SECONDS = 1.0
# ... but the last tasks of a sweep must be small, or one worker finishes a batch while the others
# idle: a task takes at most this fraction, per worker, of the work not yet planned (guided
# self-scheduling), so tasks shrink towards single cells at the end.
_TAPER = 1 / 4
# A cell alone in its task gets its fine-grained graph (theory per loss, draws, writer) from this
# estimate up: its parts then run on several workers at once, for a few ms of overhead per part.
_SPLIT_SECONDS = 0.25
# For tests: every task of this many cells (0: every cell its fine-grained graph); None: planned.
_CELLS_PER_TASK: int | None = None

# Errors that say the store cannot be written at all (a full disk or quota, a denied permission, a
# read-only file system): no retry and no other cell would get past them, so the run stops.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})
# Failure messages kept in the report (a sweep failing everywhere would otherwise repeat one
# message thousands of times).
_KEPT_MESSAGES = 20


@dataclass(frozen=True)
class RunReport:
    """What a call of :func:`run_sweep` did.

    Attributes
    ----------
    computed_cells : int
        Cells ``(c, signal)`` submitted and written by this run.
    skipped_cells : int
        Cells already done in the store, not computed again.
    failed_points : int
        Points ``(c, loss, signal, trial)`` of this run recorded as failed (or, where a cell could
        not be written at all, left pending).
    store : str
        The store's path.
    failures : tuple of str
        The distinct failure messages (at most 20).
    earlier_failed_points : int
        Points recorded as failed by an earlier run and not tried again (see ``retry_failed``).
    stopped : str
        Why the run stopped before its end ("" when it did not): the store could not be written
        (a full disk, a denied permission, a read-only file system).  The cells not written are
        left pending; running again once the cause is gone resumes the sweep.
    """

    computed_cells: int
    skipped_cells: int
    failed_points: int
    store: str
    failures: tuple[str, ...] = ()
    earlier_failed_points: int = 0
    stopped: str = ""

    @property
    def ok(self) -> bool:
        """``True`` when the run went to its end and the store holds no failed point."""
        return self.failed_points == 0 and self.earlier_failed_points == 0 and not self.stopped


def run_sweep(
    spec: Spec,
    store_path: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    attempts: int = 3,
    retry_failed: bool = False,
    dashboard_address: str = ":8787",
    echo: Callable[[str], None] | None = print,
) -> RunReport:
    """Compute every pending cell of a sweep into its Zarr store.

    The store is created if absent.  An existing store must have been made by the same sweep
    definition (:func:`pipeline.store.check_store`); only its cells not yet ``done`` are
    computed, so running a sweep again resumes it.  Nothing is written and no cluster is started
    before the store has been checked.

    Parameters
    ----------
    spec : Spec
        The validated sweep.
    store_path : str or path-like
        The Zarr store.  With an external scheduler it must be reachable at the same path from
        every worker (a shared file system).
    workers : int, optional
        Worker processes of the local cluster, one thread each; by default one per core available
        to this process.  Not allowed with ``scheduler``.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://HOST:PORT``) to use instead of a local
        cluster.  Its workers should be started with :data:`WORKER_ENVIRONMENT` (``dask worker``
        under a nanny does so by default, through ``distributed.nanny.pre-spawn-environ``).
    progress : bool, default True
        Show a progress bar of the tasks (:func:`distributed.progress`): a batch of cheap cells
        counts as one task.
    attempts : int, default 3
        Tries of a computation that raises before its points are recorded as failed, ``>= 1``.
        A theory that does not converge is recorded as failed at once: it is deterministic, and
        would not converge on a second try.
    retry_failed : bool, default False
        Compute again the cells holding points that an earlier run recorded as failed.  Without
        it they are left as they are (and counted in ``earlier_failed_points``).
    dashboard_address : str, default ``":8787"``
        Where the local cluster serves its dashboard (``":0"``: any free port).
    echo : callable or None, default :func:`print`
        Called with the dashboard link and other one-line notices; ``None`` for silence.

    Returns
    -------
    RunReport

    Raises
    ------
    StoreError
        If the store exists but was made by another sweep (naming what differs) or is not a store,
        or if another run holds its lock (:func:`pipeline.store.lock`).
    ValueError
        For ``workers`` with ``scheduler``, ``workers < 1`` or ``attempts < 1``.
    OSError
        If the scheduler cannot be reached.

    See Also
    --------
    pipeline.store.pending_cells, pipeline.open_cube
    """
    if workers is not None and scheduler is not None:
        raise ValueError("give workers or scheduler, not both")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, not {attempts}")
    say = echo or (lambda _: None)
    path = os.fspath(store_path)
    # Checked before the lock is taken: a store of another sweep is refused with nothing written.
    if os.path.exists(path):
        store.check_store(path, spec)
    with store.lock(path):
        run = _Run(spec, path, workers, scheduler, progress, attempts, retry_failed, dashboard_address, say)
        return _run_locked(run)


@dataclass(frozen=True)
class _Run:
    """The arguments of :func:`run_sweep`, checked."""

    spec: Spec
    path: str
    workers: int | None
    scheduler: str | None
    progress: bool
    attempts: int
    retry_failed: bool
    dashboard_address: str
    say: Callable[[str], None]


def _run_locked(run: _Run) -> RunReport:
    """:func:`run_sweep` once the store's lock is held."""
    spec, path = run.spec, run.path
    cells = list(family_of(spec).layout(spec).cells())
    exists = os.path.exists(path)
    earlier = 0
    if exists:
        pending = store.pending_cells(path, failed=run.retry_failed)
        # The points failed before this run that it does not compute again.
        earlier = sum(n for cell, n in store.failed_cells(path).items() if cell not in set(pending))
    else:
        pending = cells
    if pending:
        with _client(run.workers, run.scheduler, run.dashboard_address) as client:
            n_workers = len(client.scheduler_info().get("workers", {}))
            run.say(f"dashboard: {client.dashboard_link} ({n_workers} workers)")
            client.register_plugin(_PinBlas())
            if not exists:
                store.create_store(path, spec)
            # The progress bar and as_completed find the client as the current one.
            with client.as_current():
                tasks = _plan(spec, pending, max(1, n_workers))
                outputs = _submit(client, spec, os.path.abspath(path), tasks, run.attempts)
                if run.progress:
                    _progress(list(outputs))
                collected = _collect(client, outputs, spec, path)
    else:
        collected = _Collected(0, [], "")
    computed = len(pending)
    if collected.stopped:
        computed -= len(_still_pending(path, pending))
    return RunReport(
        computed_cells=computed,
        skipped_cells=len(cells) - len(pending),
        failed_points=collected.failed,
        store=path,
        failures=tuple(collected.messages),
        earlier_failed_points=earlier,
        stopped=collected.stopped,
    )


# ----------------------------------------------------------------------------------------------
# The cluster
# ----------------------------------------------------------------------------------------------


def _cores() -> int:
    """Cores this process may run on (the affinity mask in a container), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextmanager
def _client(workers: int | None, scheduler: str | None, dashboard_address: str) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a local cluster that it closes after."""
    with ExitStack() as stack:
        if scheduler is not None:
            yield stack.enter_context(Client(scheduler, set_as_default=False))
            return
        # The Nanny sets pre-spawn-environ in the environment of the worker process before it is
        # spawned, hence before numpy (and its BLAS) loads there; the Nanny's `env=` argument is
        # applied only once the new process runs, too late for BLAS.
        environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENVIRONMENT}
        stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ": environ}))
        cluster = stack.enter_context(
            LocalCluster(
                n_workers=workers or _cores(),
                threads_per_worker=1,
                processes=True,
                dashboard_address=dashboard_address,
                silence_logs=logging.WARNING,
            )
        )
        yield stack.enter_context(Client(cluster, set_as_default=False))


def pin_blas_threads() -> list[str]:
    """Set every BLAS (and OpenMP) pool of this process (numpy's and scipy's, loaded first) to one thread.

    For a process whose environment did not pin BLAS before numpy loaded (see
    :data:`WORKER_ENVIRONMENT`), with threadpoolctl (OpenBLAS, MKL, BLIS).  The limit stays for the
    life of the process.

    Returns
    -------
    list of str
        The paths of the libraries set to one thread (empty where none was found).
    """
    import numpy  # noqa: F401  (loads numpy's BLAS)
    import scipy.linalg  # noqa: F401  (loads scipy's)

    # Not used as a context manager: the limit is set now and never restored.  OpenMP pools too, as
    # WORKER_ENVIRONMENT's OMP_NUM_THREADS would have.
    controller = ThreadpoolController()
    controller.limit(limits=1)
    return sorted(info["filepath"] for info in controller.info())


class _PinBlas(WorkerPlugin):
    """Pins BLAS to one thread (:func:`pin_blas_threads`) in every worker process, as it joins.

    A worker in the client's own process (a cluster of threads, as in the tests) is left alone:
    pinning there would change the client's BLAS for the rest of its life.
    """

    name = "hessweep-pin-blas"

    def __init__(self) -> None:
        self.client = (socket.gethostname(), os.getpid())

    def setup(self, worker: object) -> None:
        if (socket.gethostname(), os.getpid()) != self.client:
            pin_blas_threads()


def _progress(futures: list[Future]) -> None:
    """A text progress bar on stdout until every future has finished."""
    progress_bar(futures, notebook=False)
    # The bar ends without a newline.
    sys.stdout.write("\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------
# The graph
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    """Cells computed by one task (:func:`cells_task`), or, ``fine``, one cell's own graph."""

    cells: tuple[Cell, ...]
    fine: bool = False


def _plan(spec: Spec, cells: Sequence[Cell], workers: int) -> list[_Task]:
    """Group ``cells`` (in their order) into tasks, each a batch of whole cells or one cell's graph.

    Consecutive cells go into one task until their estimated cost (the family's
    :meth:`~pipeline.families.base.Family.cell_seconds`) reaches the target:
    :data:`_BATCH_SECONDS`, or less towards the end of the sweep, where the target is
    :data:`_TAPER` of the work left per worker, so that the workers finish together.  A cell
    alone in its task gets its fine-grained graph if it is costly enough (:data:`_SPLIT_SECONDS`).
    Deterministic: the same cells and worker count give the same tasks (and so the same keys).
    """
    if _CELLS_PER_TASK is not None:
        if _CELLS_PER_TASK == 0:
            return [_Task((cell,), fine=True) for cell in cells]
        size = _CELLS_PER_TASK
        return [_Task(tuple(cells[first : first + size])) for first in range(0, len(cells), size)]
    family = family_of(spec)
    costs = [family.cell_seconds(spec, cell) for cell in cells]
    left = sum(costs)
    tasks: list[_Task] = []
    group: list[Cell] = []
    cost = target = 0.0
    for cell, seconds in zip(cells, costs, strict=True):
        if not group:
            target = min(_BATCH_SECONDS, _TAPER * left / workers)
        group.append(cell)
        cost += seconds
        left -= seconds
        if cost >= target:
            tasks.append(_Task(tuple(group), fine=len(group) == 1 and cost >= _SPLIT_SECONDS))
            group, cost = [], 0.0
    if group:
        tasks.append(_Task(tuple(group)))
    return tasks


def _submit(
    client: Client, spec: Spec, path: str, tasks: Sequence[_Task], attempts: int
) -> dict[Future, tuple[Cell, ...]]:
    """Submit ``tasks`` (from :func:`_plan`) in order; return each one's final future (a batch of
    cells, or a cell's writer) and its cells.

    Keys are deterministic: a kind, a token of the sweep and the store, and the grid indices.
    Only the final futures are kept: the parts' results are released from the workers' memory as
    soon as their cell is written.  The scheduler starts tasks of equal priority in the order they
    were submitted, so cells are written roughly in grid order.
    """
    token = tokenize(spec.to_dict(), path)[:8]
    outputs: dict[Future, tuple[Cell, ...]] = {}
    for task in tasks:
        if task.fine:
            (cell,) = task.cells
            future = _submit_cell(client, spec, path, cell, attempts, token)
        else:
            first, last = _label(task.cells[0]), _label(task.cells[-1])
            future = client.submit(
                cells_task, path, spec, task.cells, attempts, key=f"cells-{token}-{first}-{last}", pure=False
            )
        outputs[future] = task.cells
    return outputs


def _label(items: Sequence[object]) -> str:
    """``1-0``: indices or a part's description for a task key."""
    return "-".join(str(item) for item in items)


def _submit_cell(client: Client, spec: Spec, path: str, cell: Cell, attempts: int, token: str) -> Future:
    """Submit the fine-grained graph of one cell: a task per part, then a writer; return the writer."""
    results = [
        client.submit(
            part_task,
            spec,
            cell,
            part,
            attempts,
            key=f"{part[0]}-{token}-{_label(cell)}-{_label(part[1:])}",
            pure=False,
        )
        for part in family_of(spec).parts(spec, cell)
    ]
    return client.submit(
        write_task,
        path,
        spec,
        cell,
        results,
        attempts,
        key=f"write_cell-{token}-{_label(cell)}",
        pure=False,
        priority=_WRITER_PRIORITY,
    )


@dataclass(frozen=True)
class _Collected:
    """What the final futures of a run reported (see :class:`RunReport`)."""

    failed: int
    messages: list[str]
    stopped: str


def _collect(client: Client, outputs: dict[Future, tuple[Cell, ...]], spec: Spec, path: str) -> _Collected:
    """Wait for the final futures; count the failed points, keep the distinct failure messages.

    A task that could not write the store (:data:`_STORAGE_ERRNOS`) stops the run: the tasks not
    finished are cancelled (a running one may still write its cell, whole), since every other
    cell would fail the same way after its computation.
    """
    layout = family_of(spec).layout(spec)
    cell_points = int(np.prod(layout.block_shape(layout.point_dims)))
    failed = 0
    messages: list[str] = []
    stopped = ""
    waiting = set(outputs)
    for future in as_completed(list(outputs)):
        waiting.discard(future)
        try:
            result: CellOutcome | list[CellOutcome] = future.result()
        except (Exception, CancelledError) as error:
            # The task, or one it needs, failed outside our retries (KilledWorker after repeated
            # worker deaths, a task cancelled with its scheduler).  A batch may have written some
            # of its cells before: only those still pending count as failed.
            cells = outputs[future]
            lost = _still_pending(path, cells)
            failed += cell_points * len(lost)
            found = [f"cell {layout.describe_cell(cell)}: {type(error).__name__}: {error}" for cell in lost]
        else:
            found = []
            for outcome in result if isinstance(result, list) else [result]:
                failed += outcome.failed_points
                found += outcome.messages
                stopped = stopped or outcome.storage_error
        for message in found:
            if message not in messages and len(messages) < _KEPT_MESSAGES:
                messages.append(message)
        future.release()
        if stopped:
            client.cancel(list(waiting))
            break
    return _Collected(failed, messages, stopped)


def _still_pending(path: str, cells: Sequence[Cell]) -> list[Cell]:
    """Those of ``cells`` not done in the store (all of them if it cannot be read)."""
    try:
        pending = set(store.pending_cells(path))
    except Exception:  # the store's state is unknown: count the worst
        return list(cells)
    return [cell for cell in cells if cell in pending]


# ----------------------------------------------------------------------------------------------
# Task functions: module-level (picklable), plain data in and out
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellOutcome:
    """What a writer task reports back: its cell, its failed points and their messages."""

    cell: Cell
    failed_points: int
    messages: tuple[str, ...]
    storage_error: str = ""


def _storage_error(error: Exception) -> bool:
    """Whether ``error`` says the store cannot be written at all (see :data:`_STORAGE_ERRNOS`)."""
    return isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS


def part_task(spec: Spec, cell: Cell, part: Part, attempts: int) -> Any:
    """One part of a cell's work (:meth:`Family.compute <pipeline.families.base.Family.compute>`),
    tried up to ``attempts`` times; a :class:`CellFailure` if every try raised."""
    family = family_of(spec)
    return attempt(
        family.part_name(spec, cell, part), attempts, lambda: family.compute(spec, cell, part, attempts)
    )


def write_task(path: str, spec: Spec, cell: Cell, results: Sequence[Any], attempts: int) -> CellOutcome:
    """Assemble a cell from its parts' results and write it with :func:`pipeline.store.write_cell`.

    A point fails as its family says (:meth:`Family.assemble
    <pipeline.families.base.Family.assemble>`: GLM, if the theory of its loss failed or did not
    converge, or its trial's draw or that draw's analysis under its loss failed).  A write that still
    raises after ``attempts`` tries leaves the whole cell pending (not ``done``) and counts all its
    points as failed; a storage error (a full disk, a denied permission) is not tried again and is
    reported as the outcome's ``storage_error``, with no point counted as failed.
    """
    layout = family_of(spec).layout(spec)
    where = f"writing cell {layout.describe_cell(cell)}"
    cell_points = int(np.prod(layout.block_shape(layout.point_dims)))
    try:
        data = family_of(spec).assemble(spec, cell, results)
    except (TypeError, ValueError) as error:
        return CellOutcome(cell, cell_points, (f"{where}: {type(error).__name__}: {error}",))
    try:
        written = attempt(
            where, attempts, lambda: store.write_cell(path, spec, cell, data), reraise=_storage_error
        )
    except OSError as error:
        # The cell stays pending (its points are neither done nor failed): a later run computes it.
        reason = f"{where}: {error.strerror} ({error.filename or path})"
        return CellOutcome(cell, 0, (), storage_error=reason)
    if isinstance(written, CellFailure):
        return CellOutcome(cell, cell_points, (*data.messages, written.message))
    return CellOutcome(cell, int(np.count_nonzero(data.errors != "")), data.messages)


def cell_task(path: str, spec: Spec, cell: Cell, attempts: int) -> CellOutcome:
    """One whole cell in this task: every part, one after the other, then the write.

    The same computations, retries and failure records as the fine-grained graph of a cell
    (:func:`part_task`, :func:`write_task`), in the same order, so the same bits.
    """
    results = [part_task(spec, cell, part, attempts) for part in family_of(spec).parts(spec, cell)]
    return write_task(path, spec, cell, results, attempts)


def cells_task(path: str, spec: Spec, cells: Sequence[Cell], attempts: int) -> list[CellOutcome]:
    """:func:`cell_task` for several cells, one after the other: each is written (data, then its
    ``done`` mask) before the next is started, so an interrupted batch leaves whole cells."""
    outcomes = []
    for cell in cells:
        outcomes.append(cell_task(path, spec, cell, attempts))
        if outcomes[-1].storage_error:
            break  # the store cannot be written: the cells left stay pending
    return outcomes
