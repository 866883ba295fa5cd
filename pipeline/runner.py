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
from typing import TypeVar

import dask
from dask.base import tokenize
from distributed import Client, Future, LocalCluster, as_completed
from distributed import progress as progress_bar
from distributed.diagnostics.plugin import WorkerPlugin
from threadpoolctl import ThreadpoolController

from pipeline import lanczos, montecarlo, store, theory
from pipeline.lanczos import LanczosResult
from pipeline.montecarlo import MonteCarloResult
from pipeline.store import CellFailure
from pipeline.sweep import SweepSpec
from pipeline.theory import TheoryResult

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
# A draw cheaper than this (a few milliseconds) shares one task with the other trials of its cell.
_BATCH_FLOPS = 3e7

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

# One-core costs of a cell's parts, for choosing the batch size only (a factor 2 off only halves
# or doubles a batch), measured on tiny to p = 800 sweeps: a theory solve costs a fixed part (its
# adaptive grid and spike scan) and a part per abscissa (0.02-0.06 s at 32-64 points, 0.1-0.2 s at
# 400); a draw costs its Python calls plus its BLAS work at about 1e10 flop/s; a cell's write
# (store.write_cell: open the group, one region per variable, then done) 0.05-0.07 s.
_SOLVE_SECONDS = 0.05
_SOLVE_SECONDS_PER_POINT = 2.5e-4
_DRAW_SECONDS = 2e-3
_FLOPS_PER_SECOND = 1e10
_WRITE_SECONDS = 0.06
# Errors that say the store cannot be written at all (a full disk or quota, a denied permission, a
# read-only file system): no retry and no other cell would get past them, so the run stops.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})
# Failure messages kept in the report (a sweep failing everywhere would otherwise repeat one
# message thousands of times).
_KEPT_MESSAGES = 20

_T = TypeVar("_T")


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
    spec: SweepSpec,
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
    spec : SweepSpec
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

    spec: SweepSpec
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
    n_c, _, n_signal, _ = spec.shape
    total = n_c * n_signal
    exists = os.path.exists(path)
    earlier = 0
    if exists:
        pending = store.pending_cells(path, failed=run.retry_failed)
        # The points failed before this run that it does not compute again.
        earlier = sum(n for cell, n in store.failed_cells(path).items() if cell not in set(pending))
    else:
        pending = [(i_c, i_s) for i_c in range(n_c) for i_s in range(n_signal)]
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
        skipped_cells=total - len(pending),
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

    cells: tuple[tuple[int, int], ...]
    fine: bool = False


def _cell_seconds(spec: SweepSpec, i_c: int) -> float:
    """Rough one-core seconds of a cell at ``c[i_c]``: every loss's theory, every draw, the write."""
    _, n_loss, _, trials = spec.shape
    solve = _SOLVE_SECONDS + _SOLVE_SECONDS_PER_POINT * spec.theory.points
    draw = _DRAW_SECONDS + _draw_flops(spec, i_c) / _FLOPS_PER_SECOND
    return n_loss * solve + trials * draw + _WRITE_SECONDS


def _plan(spec: SweepSpec, cells: Sequence[tuple[int, int]], workers: int) -> list[_Task]:
    """Group ``cells`` (in their order) into tasks, each a batch of whole cells or one cell's graph.

    Consecutive cells go into one task until their estimated cost (:func:`_cell_seconds`) reaches
    the target: :data:`_BATCH_SECONDS`, or less towards the end of the sweep, where the target is
    :data:`_TAPER` of the work left per worker, so that the workers finish together.  A cell
    alone in its task gets its fine-grained graph if it is costly enough (:data:`_SPLIT_SECONDS`).
    Deterministic: the same cells and worker count give the same tasks (and so the same keys).
    """
    if _CELLS_PER_TASK is not None:
        if _CELLS_PER_TASK == 0:
            return [_Task((cell,), fine=True) for cell in cells]
        size = _CELLS_PER_TASK
        return [_Task(tuple(cells[first : first + size])) for first in range(0, len(cells), size)]
    costs = [_cell_seconds(spec, i_c) for i_c, _ in cells]
    left = sum(costs)
    tasks: list[_Task] = []
    group: list[tuple[int, int]] = []
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
    client: Client, spec: SweepSpec, path: str, tasks: Sequence[_Task], attempts: int
) -> dict[Future, tuple[tuple[int, int], ...]]:
    """Submit ``tasks`` (from :func:`_plan`) in order; return each one's final future (a batch of
    cells, or a cell's writer) and its cells.

    Keys are deterministic: a kind, a token of the sweep and the store, and the grid indices.
    Only the final futures are kept: the theory and Monte Carlo results are released from the
    workers' memory as soon as their cell is written.  The scheduler starts tasks of equal
    priority in the order they were submitted, so cells are written roughly in grid order.
    """
    token = tokenize(spec.to_dict(), path)[:8]
    outputs: dict[Future, tuple[tuple[int, int], ...]] = {}
    for task in tasks:
        if task.fine:
            ((i_c, i_s),) = task.cells
            future = _submit_cell(client, spec, path, i_c, i_s, attempts, token)
        else:
            (first_c, first_s), (last_c, last_s) = task.cells[0], task.cells[-1]
            future = client.submit(
                cells_task,
                path,
                spec,
                task.cells,
                attempts,
                key=f"cells-{token}-{first_c}-{first_s}-{last_c}-{last_s}",
                pure=False,
            )
        outputs[future] = task.cells
    return outputs


def _submit_cell(
    client: Client, spec: SweepSpec, path: str, i_c: int, i_s: int, attempts: int, token: str
) -> Future:
    """Submit the fine-grained graph of one cell: theory per loss, draws, a writer; return the writer."""
    _, n_loss, _, trials = spec.shape
    solved = [
        client.submit(
            theory_task,
            spec,
            i_c,
            i_l,
            i_s,
            attempts,
            key=f"theory-{token}-{i_c}-{i_l}-{i_s}",
            pure=False,
        )
        for i_l in range(n_loss)
    ]
    # Cheap draws go in one task per cell, so that the per-task overhead of the scheduler
    # (about a millisecond) stays small beside the work; others get a task per trial.
    per_task = trials if _draw_flops(spec, i_c) < _BATCH_FLOPS else 1
    batches = [
        client.submit(
            montecarlo_batch_task,
            spec,
            i_c,
            i_s,
            tuple(range(first, min(first + per_task, trials))),
            attempts,
            key=f"montecarlo-{token}-{i_c}-{i_s}-{first}-{min(first + per_task, trials)}",
            pure=False,
        )
        for first in range(0, trials, per_task)
    ]
    return client.submit(
        write_batches_task,
        path,
        spec,
        i_c,
        i_s,
        solved,
        batches,
        attempts,
        key=f"write_cell-{token}-{i_c}-{i_s}",
        pure=False,
        priority=_WRITER_PRIORITY,
    )


@dataclass(frozen=True)
class _Collected:
    """What the final futures of a run reported (see :class:`RunReport`)."""

    failed: int
    messages: list[str]
    stopped: str


def _collect(
    client: Client, outputs: dict[Future, tuple[tuple[int, int], ...]], spec: SweepSpec, path: str
) -> _Collected:
    """Wait for the final futures; count the failed points, keep the distinct failure messages.

    A task that could not write the store (:data:`_STORAGE_ERRNOS`) stops the run: the tasks not
    finished are cancelled (a running one may still write its cell, whole), since every other
    cell would fail the same way after its computation.
    """
    _, n_loss, _, trials = spec.shape
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
            failed += n_loss * trials * len(lost)
            found = [f"cell c[{i_c}], signal[{i_s}]: {type(error).__name__}: {error}" for i_c, i_s in lost]
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


def _still_pending(path: str, cells: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
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

    i_c: int
    i_signal: int
    failed_points: int
    messages: tuple[str, ...]
    storage_error: str = ""


def _storage_error(error: Exception) -> bool:
    """Whether ``error`` says the store cannot be written at all (see :data:`_STORAGE_ERRNOS`)."""
    return isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS


def _attempt(what: str, attempts: int, compute: Callable[[], _T]) -> _T | CellFailure:
    """``compute()``, tried up to ``attempts`` times; a :class:`CellFailure` if every try raised.

    A storage error (:func:`_storage_error`) is raised at once: no try would get past it.
    """
    error: Exception | None = None
    for _ in range(attempts):
        try:
            return compute()
        except Exception as exc:  # the point fails, the run goes on
            if _storage_error(exc):
                raise
            error = exc
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return CellFailure(f"{what}: {type(error).__name__}: {error} ({tries})")


def theory_task(
    spec: SweepSpec, i_c: int, i_loss: int, i_signal: int, attempts: int
) -> TheoryResult | CellFailure:
    """The theory of point ``(i_c, i_loss, i_signal)``: :func:`pipeline.theory.solve`, retried."""
    where = f"theory at c[{i_c}], loss[{i_loss}], signal[{i_signal}]"

    def compute() -> TheoryResult:
        return theory.solve(spec.scenario(i_c, i_loss, i_signal), points=spec.theory.points)

    return _attempt(where, attempts, compute)


def montecarlo_task(
    spec: SweepSpec, i_c: int, i_signal: int, trial: int, attempts: int
) -> list[MonteCarloResult | LanczosResult | CellFailure] | CellFailure:
    """One Monte Carlo draw at ``(i_c, i_signal, trial)``, analysed under every loss, retried.

    Returns one result per loss, in loss order, a loss whose analysis failed as a
    :class:`CellFailure`; or one :class:`CellFailure` if the draw itself failed.  The draw depends
    only on the seed and the point's geometry (not on the loss), so a retry draws the same numbers.
    """
    where = f"Monte Carlo at c[{i_c}], signal[{i_signal}], trial {trial}"
    options = spec.montecarlo
    seed = spec.seed_for(i_c, i_signal, trial)
    first = spec.scenario(i_c, 0, i_signal)
    analyse: Callable[[int], Callable[[], MonteCarloResult | LanczosResult]]
    if options.method == "lanczos":
        features = _attempt(
            where,
            attempts,
            lambda: lanczos.draw(first, spec.p, seed, dtype=options.dtype, memory=options.memory_gb * 1e9),
        )
        if isinstance(features, CellFailure):
            return features
        blocks: lanczos.FeatureBlocks = features

        def analyse(i_loss: int) -> Callable[[], LanczosResult]:
            scenario = spec.scenario(i_c, i_loss, i_signal)
            return lambda: lanczos.analyse(
                blocks, scenario, seed, k=options.k, probes=options.probes, steps=options.steps
            )
    else:
        drawn = _attempt(where, attempts, lambda: montecarlo.draw(first, spec.p, seed))
        if isinstance(drawn, CellFailure):
            return drawn
        draw: montecarlo.Draw = drawn

        def analyse(i_loss: int) -> Callable[[], MonteCarloResult]:
            scenario = spec.scenario(i_c, i_loss, i_signal)
            return lambda: montecarlo.analyse(draw, scenario, k=options.k)

    return [_attempt(f"{where}, loss[{i_l}]", attempts, analyse(i_l)) for i_l in range(spec.shape[1])]


def montecarlo_batch_task(
    spec: SweepSpec, i_c: int, i_signal: int, trials: Sequence[int], attempts: int
) -> list[list[MonteCarloResult | LanczosResult | CellFailure] | CellFailure]:
    """:func:`montecarlo_task` for several trials of one point, in one task."""
    return [montecarlo_task(spec, i_c, i_signal, trial, attempts) for trial in trials]


def write_batches_task(
    path: str,
    spec: SweepSpec,
    i_c: int,
    i_signal: int,
    solved: list[TheoryResult | CellFailure],
    batches: list[list[list[MonteCarloResult | LanczosResult | CellFailure] | CellFailure]],
    attempts: int,
) -> CellOutcome:
    """:func:`write_task` with the Monte Carlo results given as batches of trials, in order."""
    trials = [trial for batch in batches for trial in batch]
    return write_task(path, spec, i_c, i_signal, solved, trials, attempts)


def _draw_flops(spec: SweepSpec, i_c: int) -> float:
    """Rough flops of one draw analysed under every loss (:meth:`SweepSpec.draw_flops`)."""
    return spec.shape[1] * spec.draw_flops(i_c)


def write_task(
    path: str,
    spec: SweepSpec,
    i_c: int,
    i_signal: int,
    solved: list[TheoryResult | CellFailure],
    drawn: list[list[MonteCarloResult | LanczosResult | CellFailure] | CellFailure],
    attempts: int,
) -> CellOutcome:
    """Write one cell with :func:`pipeline.store.write_cell`; report its failed points.

    A point ``(loss, trial)`` failed if the theory of its loss, the Monte Carlo draw of its trial
    or that draw's analysis under its loss failed, or if its theory did not converge.  A write that
    still raises after ``attempts`` tries leaves the whole cell pending (not ``done``) and counts all
    its points as failed; a storage error (a full disk, a denied permission) is not tried again and
    is reported as the outcome's ``storage_error``, with no point counted as failed.
    """
    n_loss, trials = len(solved), len(drawn)
    failed = 0
    bad_theory = [isinstance(solution, CellFailure) for solution in solved]
    messages = [solution.message for solution in solved if isinstance(solution, CellFailure)]
    for i_loss, solution in enumerate(solved):
        if isinstance(solution, TheoryResult) and not solution.converged:
            bad_theory[i_loss] = True
            messages.append(f"theory at c[{i_c}], loss[{i_loss}], signal[{i_signal}]: did not converge")
    for per_loss in drawn:
        if isinstance(per_loss, CellFailure):
            failed += n_loss
            messages.append(per_loss.message)
            continue
        for theory_failed, result in zip(bad_theory, per_loss, strict=True):
            if isinstance(result, CellFailure):
                messages.append(result.message)
            failed += theory_failed or isinstance(result, CellFailure)

    where = f"writing cell c[{i_c}], signal[{i_signal}]"
    try:
        written = _attempt(
            where, attempts, lambda: store.write_cell(path, spec, i_c, i_signal, solved, drawn)
        )
    except OSError as error:
        # The cell stays pending (its points are neither done nor failed): a later run computes it.
        reason = f"{where}: {error.strerror} ({error.filename or path})"
        return CellOutcome(i_c=i_c, i_signal=i_signal, failed_points=0, messages=(), storage_error=reason)
    if isinstance(written, CellFailure):
        failed = n_loss * trials
        messages.append(written.message)
    return CellOutcome(i_c=i_c, i_signal=i_signal, failed_points=failed, messages=tuple(messages))


def cell_task(path: str, spec: SweepSpec, i_c: int, i_signal: int, attempts: int) -> CellOutcome:
    """One whole cell in this task: the theory of every loss, the Monte Carlo of every trial, the write.

    The same computations, retries and failure records as the fine-grained graph of a cell
    (:func:`theory_task`, :func:`montecarlo_task`, :func:`write_task`), in the same order, so the
    same bits.
    """
    _, n_loss, _, trials = spec.shape
    solved = [theory_task(spec, i_c, i_loss, i_signal, attempts) for i_loss in range(n_loss)]
    drawn = [montecarlo_task(spec, i_c, i_signal, trial, attempts) for trial in range(trials)]
    return write_task(path, spec, i_c, i_signal, solved, drawn, attempts)


def cells_task(
    path: str, spec: SweepSpec, cells: Sequence[tuple[int, int]], attempts: int
) -> list[CellOutcome]:
    """:func:`cell_task` for several cells, one after the other: each is written (data, then its
    ``done`` mask) before the next is started, so an interrupted batch leaves whole cells."""
    outcomes = []
    for i_c, i_signal in cells:
        outcomes.append(cell_task(path, spec, i_c, i_signal, attempts))
        if outcomes[-1].storage_error:
            break  # the store cannot be written: the cells left stay pending
    return outcomes
