"""The Dask graph of a sweep: submission, progress, resume, retries.

One sweep is a forest of small graphs, one per *cell* ``(i_c, i_signal)`` of the cube (the unit
that :mod:`pipeline.store` writes):

* a theory task per point ``(c, loss, signal)`` calls :func:`pipeline.theory.solve`;
* a Monte Carlo task per draw ``(c, signal, trial)`` makes one :func:`pipeline.montecarlo.draw`
  and analyses it under every loss, so that all losses at one point see the same ``X``;
* a writer task per cell gathers the theory results of all losses and the Monte Carlo results of
  all trials and calls :func:`pipeline.store.write_cell`, which writes the cell's data and then its
  ``done`` mask.  No two tasks write one chunk.

A computation that raises is tried again inside its task, up to ``attempts`` times in all, and is
then handed to the writer as a :class:`~pipeline.store.CellFailure`: the store records the affected
points as failed and the run goes on.  A worker that dies is Dask's business: its tasks are
rescheduled on the others.

Only this module knows Dask.  The workers' BLAS is pinned to one thread (see
:data:`WORKER_ENVIRONMENT`): eigenvalues are bit-identical only for a fixed BLAS thread count, so
pinning is what makes a sweep on one worker, on two, or on a cluster give the same cube.
"""

from __future__ import annotations

import logging
import os
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

from pipeline import montecarlo, store, theory
from pipeline.montecarlo import MonteCarloResult
from pipeline.store import CellFailure
from pipeline.sweep import SweepSpec
from pipeline.theory import TheoryResult

__all__ = ["WORKER_ENVIRONMENT", "RunReport", "run_sweep"]

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
    """

    computed_cells: int
    skipped_cells: int
    failed_points: int
    store: str
    failures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """``True`` when no point failed."""
        return self.failed_points == 0


def run_sweep(
    spec: SweepSpec,
    store_path: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    attempts: int = 3,
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
        Show a progress bar of the cells (:func:`distributed.progress`).
    attempts : int, default 3
        Tries of a failing computation before its points are recorded as failed, ``>= 1``.
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
        If the store exists but was made by another sweep (naming what differs) or is not a store.
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
    n_c, _, n_signal, _ = spec.shape
    total = n_c * n_signal

    exists = os.path.exists(path)
    if exists:
        store.check_store(path, spec)
        pending = list(store.pending_cells(path))
    else:
        pending = [(i_c, i_s) for i_c in range(n_c) for i_s in range(n_signal)]
    if not pending:
        return RunReport(computed_cells=0, skipped_cells=total, failed_points=0, store=path)

    with _client(workers, scheduler, dashboard_address) as client:
        n_workers = len(client.scheduler_info().get("workers", {}))
        say(f"dashboard: {client.dashboard_link} ({n_workers} workers)")
        if not exists:
            store.create_store(path, spec)
        # The progress bar and as_completed find the client as the current one.
        with client.as_current():
            writers = _submit(client, spec, os.path.abspath(path), pending, attempts)
            if progress:
                _progress(list(writers))
            failed, messages = _collect(writers, spec)

    return RunReport(
        computed_cells=len(pending),
        skipped_cells=total - len(pending),
        failed_points=failed,
        store=path,
        failures=tuple(messages),
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


def _progress(futures: list[Future]) -> None:
    """A text progress bar on stdout until every future has finished."""
    progress_bar(futures, notebook=False)
    # The bar ends without a newline.
    sys.stdout.write("\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------
# The graph
# ----------------------------------------------------------------------------------------------


def _submit(
    client: Client, spec: SweepSpec, path: str, cells: Sequence[tuple[int, int]], attempts: int
) -> dict[Future, tuple[int, int]]:
    """Submit the tasks of ``cells``, cell after cell; return the writers and their cells.

    Keys are deterministic: a kind, a token of the sweep and the store, and the grid indices.
    Only the writers are kept: the theory and Monte Carlo results are released from the
    workers' memory as soon as their cell is written.
    """
    token = tokenize(spec.to_dict(), path)[:8]
    _, n_loss, _, trials = spec.shape
    writers: dict[Future, tuple[int, int]] = {}
    for i_c, i_s in cells:
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
        writer = client.submit(
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
        writers[writer] = (i_c, i_s)
    return writers


def _collect(writers: dict[Future, tuple[int, int]], spec: SweepSpec) -> tuple[int, list[str]]:
    """Wait for the writers; return the failed points and the distinct failure messages."""
    _, n_loss, _, trials = spec.shape
    failed = 0
    messages: list[str] = []
    for future in as_completed(list(writers)):
        try:
            outcome: CellOutcome = future.result()
        except (Exception, CancelledError) as error:
            # The writer, or a task it needs, failed outside our retries (KilledWorker after
            # repeated worker deaths, a task cancelled with its scheduler): the cell stays pending.
            i_c, i_s = writers[future]
            failed += n_loss * trials
            found = [f"cell c[{i_c}], signal[{i_s}]: {type(error).__name__}: {error}"]
        else:
            failed += outcome.failed_points
            found = list(outcome.messages)
        for message in found:
            if message not in messages and len(messages) < _KEPT_MESSAGES:
                messages.append(message)
        future.release()
    return failed, messages


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


def _attempt(what: str, attempts: int, compute: Callable[[], _T]) -> _T | CellFailure:
    """``compute()``, tried up to ``attempts`` times; a :class:`CellFailure` if every try raised."""
    error: Exception | None = None
    for _ in range(attempts):
        try:
            return compute()
        except Exception as exc:  # the point fails, the run goes on
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
) -> list[MonteCarloResult | CellFailure] | CellFailure:
    """One Monte Carlo draw at ``(i_c, i_signal, trial)``, analysed under every loss, retried.

    Returns one result per loss, in loss order, a loss whose analysis failed as a
    :class:`CellFailure`; or one :class:`CellFailure` if the draw itself failed.  The draw depends
    only on the seed and the point's geometry (not on the loss), so a retry draws the same numbers.
    """
    where = f"Monte Carlo at c[{i_c}], signal[{i_signal}], trial {trial}"
    drawn = _attempt(
        where,
        attempts,
        lambda: montecarlo.draw(spec.scenario(i_c, 0, i_signal), spec.p, spec.seed_for(i_c, i_signal, trial)),
    )
    if isinstance(drawn, CellFailure):
        return drawn
    draw: montecarlo.Draw = drawn

    def analyse(i_loss: int) -> Callable[[], MonteCarloResult]:
        return lambda: montecarlo.analyse(draw, spec.scenario(i_c, i_loss, i_signal), k=spec.montecarlo.k)

    return [_attempt(f"{where}, loss[{i_l}]", attempts, analyse(i_l)) for i_l in range(spec.shape[1])]


def montecarlo_batch_task(
    spec: SweepSpec, i_c: int, i_signal: int, trials: Sequence[int], attempts: int
) -> list[list[MonteCarloResult | CellFailure] | CellFailure]:
    """:func:`montecarlo_task` for several trials of one point, in one task."""
    return [montecarlo_task(spec, i_c, i_signal, trial, attempts) for trial in trials]


def write_batches_task(
    path: str,
    spec: SweepSpec,
    i_c: int,
    i_signal: int,
    solved: list[TheoryResult | CellFailure],
    batches: list[list[list[MonteCarloResult | CellFailure] | CellFailure]],
    attempts: int,
) -> CellOutcome:
    """:func:`write_task` with the Monte Carlo results given as batches of trials, in order."""
    trials = [trial for batch in batches for trial in batch]
    return write_task(path, spec, i_c, i_signal, solved, trials, attempts)


def _draw_flops(spec: SweepSpec, i_c: int) -> float:
    """Rough flops of one draw analysed under every loss: the rank-n update and the reduction."""
    p, n = spec.p, max(1, round(spec.p / spec.grid.c[i_c]))
    return spec.shape[1] * (n * p**2 + 4.0 / 3.0 * p**3)


def write_task(
    path: str,
    spec: SweepSpec,
    i_c: int,
    i_signal: int,
    solved: list[TheoryResult | CellFailure],
    drawn: list[list[MonteCarloResult | CellFailure] | CellFailure],
    attempts: int,
) -> CellOutcome:
    """Write one cell with :func:`pipeline.store.write_cell`; report its failed points.

    A point ``(loss, trial)`` failed if the theory of its loss, the Monte Carlo draw of its trial
    or that draw's analysis under its loss failed.  A write that still raises after ``attempts``
    tries leaves the whole cell pending (not ``done``) and counts all its points as failed.
    """
    n_loss, trials = len(solved), len(drawn)
    failed = 0
    bad_theory = [isinstance(solution, CellFailure) for solution in solved]
    messages = [solution.message for solution in solved if isinstance(solution, CellFailure)]
    for per_loss in drawn:
        if isinstance(per_loss, CellFailure):
            failed += n_loss
            messages.append(per_loss.message)
            continue
        for theory_failed, result in zip(bad_theory, per_loss, strict=True):
            if isinstance(result, CellFailure):
                messages.append(result.message)
            failed += theory_failed or isinstance(result, CellFailure)

    written = _attempt(
        f"writing cell c[{i_c}], signal[{i_signal}]",
        attempts,
        lambda: store.write_cell(path, spec, i_c, i_signal, solved, drawn),
    )
    if isinstance(written, CellFailure):
        failed = n_loss * trials
        messages.append(written.message)
    return CellOutcome(i_c=i_c, i_signal=i_signal, failed_points=failed, messages=tuple(messages))
