"""Benchmarks of the sweep runner: Dask overhead on tiny points, scaling from 1 to 2 workers.

Every figure is a ratio measured in one run: the overhead is the wall time of ``run_sweep`` against
the compute time of its tasks (from the scheduler's task stream), the scaling the wall time on one
worker against two, runs interleaved (1, 2, 1, 2, ...) after one warm-up sweep on each cluster.
See ``bench/README.md``.

Usage (from the repository root)::

    .venv/bin/python bench/sweep.py            # full run, prints Markdown (~4 min on 2 cores)
    .venv/bin/python bench/sweep.py --quick    # smoke run with small sweeps
    .venv/bin/python bench/sweep.py --write    # full run, and record it in bench/RESULTS.md

The clusters are started here (``LocalCluster``, one thread per worker, the workers' BLAS pinned
to one thread as ``run_sweep`` does for its own) and handed to ``run_sweep`` by address, so that
their start-up is not timed.
"""

from __future__ import annotations

import datetime
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import dask
import psutil
from distributed import Client, LocalCluster, get_task_stream
from engine import (
    command_line,
    cpu_counters,
    load_average,
    machine,
    measured_section,
    pause_of,
    run_parser,
    spread,
    state_lines,
    write_results,
)

from pipeline import store
from pipeline.runner import WORKER_ENVIRONMENT, run_sweep
from pipeline.sweep import SweepSpec, parse_sweep

ROOT = Path(__file__).resolve().parent.parent

# Section 1: 10 c × 100 signal = 1000 cells of p = 20, one loss, one trial; the theory on the
# smallest grid a sweep allows (32 points) and a discrete law of g (square loss), ~0.02 s a point.
OVERHEAD_SWEEP = """
name: bench_overhead
p: 20
trials: 1
model: linear
grid:
  c: {{start: 0.2, stop: 0.8, num: {n_c}}}
  loss: [square]
  signal: {{start: 0.0, stop: 3.0, num: {n_signal}}}
signal: mu.norm
fixed:
  w_star: {{norm: 1.0}}
theory: {{points: 32}}
"""

# Section 2: compute-bound cells, ~1 s each on one core: p = 800, 2 trials, logistic loss (c = 1 is
# left out: it is the critical ratio of a law of g without mass at 0, slower to solve).
SCALING_SWEEP = """
name: bench_scaling
p: {p}
trials: 2
model: logistic
grid:
  c: [0.5, 2.0]
  loss: [logistic]
  signal: {{start: 0.0, stop: 3.0, num: {n_signal}}}
signal: mu.norm
fixed:
  mu: {{angle: 90}}
"""


# ----------------------------------------------------------------------------------------------
# Clusters and the CPU of their processes
# ----------------------------------------------------------------------------------------------


@contextmanager
def cluster(workers: int) -> Iterator[tuple[LocalCluster, Client]]:
    """A local cluster as ``run_sweep`` starts one (one thread per worker, BLAS pinned), and a client."""
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENVIRONMENT}
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.WARNING,
        ) as local,
        Client(local, set_as_default=False) as client,
    ):
        yield local, client


def descendants_cpu() -> float:
    """CPU seconds of this process's live descendants (the clusters' worker processes).

    Once a worker process has ended and been reaped, its time is in ``os.times().children_*``,
    which ``engine.cpu_counters`` already counts as this run's own.
    """
    total = 0.0
    for process in psutil.Process().children(recursive=True):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def counters() -> dict[str, float]:
    """``engine.cpu_counters`` with the cluster's workers counted as this run's own CPU."""
    state = cpu_counters()
    state["own"] += descendants_cpu()
    return state


def foreign(before: dict[str, float], after: dict[str, float]) -> float:
    wall = after["wall"] - before["wall"]
    return ((after["busy"] - before["busy"]) - (after["own"] - before["own"])) / wall


def timed_sweep(spec: SweepSpec, client: Client, address: str) -> dict[str, Any]:
    """Wall time of ``run_sweep`` into a fresh store, and the compute time of its tasks by kind."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as folder:
        main = psutil.Process()
        with get_task_stream(client) as stream:
            cpu = sum(main.cpu_times()[:2])
            # The task stream's times are the workers' time.time(), on this host.
            start, epoch = time.perf_counter(), time.time()
            report = run_sweep(spec, Path(folder) / "cube.zarr", scheduler=address, progress=False, echo=None)
            wall = time.perf_counter() - start
            cpu = sum(main.cpu_times()[:2]) - cpu
        if not report.ok:
            raise RuntimeError(f"the benchmark sweep failed: {report.failures}")
    compute: dict[str, float] = {}
    counts: dict[str, int] = {}
    other = 0.0
    first, last = float("inf"), float("-inf")
    for task in stream.data:
        kind = str(task["key"]).split("-", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
        for phase in task["startstops"]:
            seconds = phase["stop"] - phase["start"]
            if phase["action"] == "compute":
                compute[kind] = compute.get(kind, 0.0) + seconds
                first, last = min(first, phase["start"]), max(last, phase["stop"])
            else:
                other += seconds
    return {
        "wall": wall,
        "compute": compute,
        "counts": counts,
        "other": other,
        "tasks": len(stream.data),
        "main_cpu": cpu,
        # Before the first task started (store creation, planning, submission) and after the
        # last one ended (collecting the outcomes).
        "head": first - epoch,
        "tail": epoch + wall - last,
    }


# ----------------------------------------------------------------------------------------------
# Section 1: overhead of run_sweep on tiny cells
# ----------------------------------------------------------------------------------------------


def section_overhead(n_c: int, n_signal: int, workers: int) -> dict[str, Any]:
    spec = parse_sweep(OVERHEAD_SWEEP.format(n_c=n_c, n_signal=n_signal))
    small = parse_sweep(OVERHEAD_SWEEP.format(n_c=1, n_signal=2))
    with cluster(workers) as (local, client):
        timed_sweep(small, client, local.scheduler_address)  # warm-up: imports on the workers
        run = timed_sweep(spec, client, local.scheduler_address)
    total = sum(run["compute"].values())
    run.update(
        cells=n_c * n_signal,
        workers=workers,
        total=total,
        overhead=run["wall"] * workers / total - 1.0,
    )
    print(
        f"  overhead: wall {run['wall']:.1f}s, tasks {total:.1f}s on {workers} workers, "
        f"overhead {run['overhead']:.1%}",
        file=sys.stderr,
        flush=True,
    )
    return run


# ----------------------------------------------------------------------------------------------
# Section 2: one worker against two on a compute-bound sweep
# ----------------------------------------------------------------------------------------------


@contextmanager
def bare_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """Worker processes without Dask: spawned with BLAS pinned to one thread, started and warm."""
    saved = {name: os.environ.get(name) for name in WORKER_ENVIRONMENT}
    os.environ.update(WORKER_ENVIRONMENT)
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        # A spawn pool starts all its processes at the first submission, with this environment.
        list(pool.map(time.sleep, [0.2] * workers))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    with pool:
        yield pool


def bare_sweep(spec: SweepSpec, pool: ProcessPoolExecutor) -> float:
    """Wall time of the sweep's cells (``runner.cell_task``: theory, Monte Carlo, write) handed
    one at a time to ``pool``'s processes; the store is created before the clock starts."""
    n_c, _, n_signal, _ = spec.shape
    cells = [(i_c, i_s) for i_c in range(n_c) for i_s in range(n_signal)]
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as folder:
        path = str(Path(folder) / "cube.zarr")
        store.create_store(path, spec)
        start = time.perf_counter()
        outcomes = list(pool.map(partial(bare_cell, path, spec), cells))
        wall = time.perf_counter() - start
    if any(outcome.failed_points for outcome in outcomes):
        raise RuntimeError("the bare benchmark sweep failed")
    return wall


def bare_cell(path: str, spec: SweepSpec, cell: tuple[int, int]) -> Any:
    # Imported here: section 1 also runs against a runner without it (an A/B of two versions).
    from pipeline.runner import cell_task

    return cell_task(path, spec, cell, attempts=1)


def section_scaling(p: int, n_signal: int, repeats: int) -> dict[str, Any]:
    spec = parse_sweep(SCALING_SWEEP.format(p=p, n_signal=n_signal))
    small = parse_sweep(SCALING_SWEEP.format(p=p, n_signal=1))
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    bare: dict[int, list[float]] = {1: [], 2: []}
    with (
        cluster(1) as (one, client_one),
        cluster(2) as (two, client_two),
        bare_pool(1) as pool_one,
        bare_pool(2) as pool_two,
    ):
        clients = {1: (client_one, one.scheduler_address), 2: (client_two, two.scheduler_address)}
        pools = {1: pool_one, 2: pool_two}
        for workers, (client, address) in clients.items():
            timed_sweep(small, client, address)  # warm-up
            bare_sweep(small, pools[workers])
        for _ in range(repeats):
            for workers, (client, address) in clients.items():
                runs[workers].append(timed_sweep(spec, client, address))
                bare[workers].append(bare_sweep(spec, pools[workers]))
                print(
                    f"  scaling: {workers} worker(s) {runs[workers][-1]['wall']:.1f}s, "
                    f"bare processes {bare[workers][-1]:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    walls = {w: [r["wall"] for r in rs] for w, rs in runs.items()}
    computes = {w: [sum(r["compute"].values()) for r in rs] for w, rs in runs.items()}
    n_c, _, n_sig, trials = spec.shape
    return {
        "p": p,
        "cells": n_c * n_sig,
        "draws": n_c * n_sig * trials,
        "repeats": repeats,
        "wall_1": statistics.median(walls[1]),
        "wall_2": statistics.median(walls[2]),
        "spread_1": spread(walls[1]),
        "spread_2": spread(walls[2]),
        "compute_1": statistics.median(computes[1]),
        "compute_2": statistics.median(computes[2]),
        **{
            f"{name}_{w}": statistics.median(value(r, w) for r in rs)
            for w, rs in runs.items()
            for name, value in (
                ("idle", lambda r, w: r["wall"] * w - sum(r["compute"].values())),
                ("head", lambda r, w: r["head"]),
                ("tail", lambda r, w: r["tail"]),
                ("main_cpu", lambda r, w: r["main_cpu"]),
                ("tasks", lambda r, w: r["tasks"]),
            )
        },
        "speedup": statistics.median(walls[1]) / statistics.median(walls[2]),
        "bare_1": statistics.median(bare[1]),
        "bare_2": statistics.median(bare[2]),
        "bare_speedup": statistics.median(bare[1]) / statistics.median(bare[2]),
        "paired": statistics.median(a / b for a, b in zip(walls[1], walls[2], strict=True)),
    }


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def overhead_lines(o: dict[str, Any]) -> list[str]:
    kinds = ", ".join(
        f"{kind} {seconds:.1f} s ({o['counts'][kind]} tasks)"
        for kind, seconds in sorted(o["compute"].items())
    )
    # Cells batched into one task write inside it: their writes are in that task's compute.
    write = (
        o["compute"].get("write_cell", 0.0) / o["counts"]["write_cell"]
        if "write_cell" in o["counts"]
        else None
    )
    return [
        "### 1. Sweep overhead: `run_sweep` on tiny cells",
        "",
        f"{o['cells']} cells (p = 20, one loss, one trial, theory on 32 points, square loss) through "
        f"`run_sweep(scheduler=...)` on a `LocalCluster` of {o['workers']} workers × 1 thread, already "
        "started and warmed up by a 2-cell sweep; a fresh store. Wall time of the call (store creation, "
        "submission, waiting, all included) against the compute time of its "
        f"{o['tasks']} tasks from the scheduler's task stream (`distributed.get_task_stream`): `cells` "
        "tasks compute and write several whole cells each, `theory`, `montecarlo` and `write_cell` "
        "tasks are the parts of a cell with a graph of its own. "
        "Overhead = wall × workers / Σ compute − 1; target ≤ 5%. `main process CPU`: the CPU time, "
        "during the call, of this process, which holds the scheduler, the nannies and both clients "
        "and shares the 2 cores with the workers. `head`: from the call to the first task's start "
        "(store creation, planning, submission); `tail`: from the last task's end to the call's return.",
        "",
        "| cells | wall (s) | Σ task compute (s) | by kind | cell write (s per cell) | transfers etc. (s) "
        "| head, tail (s) | main process CPU (s) | overhead |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {o['cells']} | {o['wall']:.1f} | {o['total']:.1f} | {kinds} | "
        f"{'in batches' if write is None else f'{write:.3f}'} | {o['other']:.1f} | "
        f"{o['head']:.2f}, {o['tail']:.2f} | {o['main_cpu']:.1f} | **{o['overhead']:.1%}** |",
    ]


def scaling_lines(s: dict[str, Any]) -> list[str]:
    return [
        "",
        "### 2. Scaling: one worker against two",
        "",
        f"A compute-bound sweep: {s['cells']} cells, {s['draws']} Monte Carlo draws at p = {s['p']} "
        "(c ∈ {0.5, 2}, logistic model and loss, 2 trials), theory on 400 points. Two clusters (1 and 2 "
        "workers × 1 thread) started and warmed up first, then runs interleaved 1, 2, 1, 2, … "
        f"({s['repeats']} each), each into a fresh store; medians. `Σ compute`: the tasks' compute "
        "time (more with two workers means each worker ran slower: the machine's 2 cores are "
        "throttled and share caches and memory bandwidth). `idle`: wall × workers − Σ compute, the "
        "workers' time without a task, of which `head` and `tail` (as in section 1, per worker). "
        "Target: wall(1) / wall(2) ≥ 1.8.",
        "",
        "| workers | wall (s) | spread | Σ task compute (s) | tasks | idle (worker-s) | head, tail (s) "
        "| main process CPU (s) |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {w} | {s[f'wall_{w}']:.1f} | {s[f'spread_{w}']:.2f} | {s[f'compute_{w}']:.1f} | "
            f"{s[f'tasks_{w}']} | {s[f'idle_{w}']:.1f} | {s[f'head_{w}']:.2f}, {s[f'tail_{w}']:.2f} | "
            f"{s[f'main_cpu_{w}']:.1f} |"
            for w in (1, 2)
        ),
        "",
        f"wall(1) / wall(2) = **{s['speedup']:.2f}** (paired: {s['paired']:.2f}); Σ compute(2) / "
        f"Σ compute(1) = {s['compute_2'] / s['compute_1']:.2f}.",
        "",
        "The machine's own limit, without Dask: the same cells (`runner.cell_task`: theory, Monte Carlo, "
        "write) handed one at a time to 1 and to 2 plain processes (`ProcessPoolExecutor`, spawned with "
        "BLAS pinned), interleaved with the runs above, store created before the clock starts: "
        f"{s['bare_1']:.1f} s and {s['bare_2']:.1f} s, speed-up {s['bare_speedup']:.2f}. "
        f"`run_sweep` against them: {s['wall_1'] / s['bare_1']:.2f} (1 worker), "
        f"{s['wall_2'] / s['bare_2']:.2f} (2 workers).",
    ]


def report(results: dict[str, Any]) -> str:
    lines = [f"## {results['date']} — `{results['command']}`", ""]
    if results["quick"]:
        lines += ["Smoke run (`--quick`): small sweeps, few repeats; not for comparison.", ""]
    lines += [
        *state_lines(results),
        "",
        "Here `other processes` leaves out the clusters' own scheduler, nanny and worker processes "
        "(their CPU is this run's).",
        "",
    ]
    if "overhead" in results:
        lines += overhead_lines(results["overhead"])
    if "scaling" in results:
        lines += scaling_lines(results["scaling"])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = run_parser(
        __doc__, "smoke run with small sweeps", "runs per worker count in section 2 (default 3, quick 1)"
    )
    parser.add_argument(
        "--section",
        choices=["all", "overhead", "scaling"],
        default="all",
        help="run one section only (not with --write)",
    )
    args = parser.parse_args()
    if args.write and args.section != "all":
        parser.error("--write records full runs only")
    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    pause = pause_of(args)

    start = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "command": command_line(__file__),
        "quick": quick,
        "machine": machine(),
        "load_start": load_average(),
        "state": {},
    }

    def section(key: str, title: str, run: Callable[[], Any]) -> Any:
        return measured_section(results["state"], key, title, run, pause, counters, foreign)

    if args.section in ("all", "overhead"):
        results["overhead"] = section(
            "1",
            "1. sweep overhead",
            lambda: section_overhead(2 if quick else 10, 10 if quick else 100, workers=2),
        )
    if args.section in ("all", "scaling"):
        results["scaling"] = section(
            "2",
            "2. scaling 1 vs 2 workers",
            lambda: section_scaling(200 if quick else 800, 2 if quick else 12, repeats),
        )
    results["load_end"] = load_average()
    results["wall_s"] = time.perf_counter() - start

    text = report(results)
    print(text)
    if args.write:
        write_results(text, text.splitlines()[0])
        print(f"written to {Path(__file__).resolve().parent.name}/RESULTS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
