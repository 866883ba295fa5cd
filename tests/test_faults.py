"""Faults lose nothing: killed workers and clients, full disks, failing points, and resumes.

Each test disturbs a run and checks the cube it ends with against an undisturbed run, bit for bit
(``assert_same_cube``), besides the fault's own report.  The README's "What happens if…" lists
them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import zarr.storage
from test_runner import TINY, assert_same_cube, run
from threadpoolctl import threadpool_limits

import pipeline
from pipeline import runner, store, theory
from pipeline.cli import main
from pipeline.store import STATUS_DONE, STATUS_FAILED, open_cube
from pipeline.sweep import SweepSpec, parse_sweep

# Big enough that a run takes several seconds on two cores, cell after cell.
RESUMABLE = """
name: resumable
p: 150
trials: 2
seed: 11
grid:
  c: [0.5, 2.0, 3.0]
  loss: [logistic, exponential]
  signal: [0.0, 1.0, 2.0, 3.0]
fixed: {mu: {angle: 90}}
theory: {points: 64}
"""
RESUMABLE_CELLS = 12
TINY_CELLS = 6

# `hessweep run` with a kill -9 of its own process at a chosen moment (argv: moment, count, then
# the command's arguments): "template", at the count-th file the store's template writes; or
# "collected", once every cell has been written, before the run ends (lock and cluster still up).
# The workers are other processes: only the client dies.
KILLED_CLIENT = """
import os, signal, sys
import zarr.storage
from pipeline import cli, runner

moment, count = sys.argv[1], int(sys.argv[2])
if moment == "template":
    writes = 0
    write = zarr.storage.LocalStore.set

    async def write_or_die(self, key, value):
        global writes
        writes += 1
        if writes == count:
            os.kill(os.getpid(), signal.SIGKILL)
        await write(self, key, value)

    zarr.storage.LocalStore.set = write_or_die
else:
    collect = runner._collect

    def collect_and_die(*args, **kwargs):
        collect(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    runner._collect = collect_and_die
sys.exit(cli.main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def tiny() -> SweepSpec:
    return parse_sweep(TINY)


@pytest.fixture(scope="module")
def undisturbed(tiny: SweepSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sweep run once without faults (two local workers)."""
    path = tmp_path_factory.mktemp("undisturbed") / "tiny.zarr"
    assert run(tiny, path, workers=2).ok
    return path


# ----------------------------------------------------------------------------------------------
# Killed processes
# ----------------------------------------------------------------------------------------------


@pytest.mark.distributed
def test_worker_killed_mid_sweep_gives_the_undisturbed_cube(tmp_path: Path) -> None:
    spec = parse_sweep(RESUMABLE)
    killed, straight = tmp_path / "killed.zarr", tmp_path / "straight.zarr"
    # Workers under nannies, BLAS pinned, as `hessweep run --workers 2` starts them.
    with runner._client(2, None, ":0") as client:
        address = client.scheduler.address
        pids = client.run(os.getpid)
        reports: list[runner.RunReport] = []
        sweep = threading.Thread(target=lambda: reports.append(run(spec, killed, scheduler=address)))
        sweep.start()
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and sweep.is_alive() and time.monotonic() < deadline:
            # A worker that is computing, once some cells (not all) are written.
            if 0 < _pending_while_running(killed, RESUMABLE_CELLS) < RESUMABLE_CELLS:
                busy = [worker for worker, keys in client.processing().items() if keys]
                victim = busy[0] if busy else None
            time.sleep(0.02)
        assert victim is not None, "the sweep ended before a worker could be killed"
        os.kill(pids[victim], signal.SIGKILL)
        sweep.join(timeout=300)
        assert not sweep.is_alive()
        (report,) = reports
        # Its nanny started a new worker; the scheduler gave its tasks to the workers alive.
        client.wait_for_workers(2, timeout=60)
        assert pids[victim] not in client.run(os.getpid).values()
        assert run(spec, straight, scheduler=address).ok
    assert (report.computed_cells, report.failed_points) == (RESUMABLE_CELLS, 0) and report.ok
    cube = open_cube(killed)
    assert bool(cube["done"].all()) and bool((cube["status"] == STATUS_DONE).all())
    assert_same_cube(killed, straight)


@pytest.mark.distributed
def test_killed_client_resumes_to_the_same_cube(tmp_path: Path) -> None:
    spec = parse_sweep(RESUMABLE)
    sweep = tmp_path / "resumable.yaml"
    sweep.write_text(RESUMABLE)
    killed = tmp_path / "killed.zarr"
    command = [sys.executable, "-m", "pipeline.cli", "run", str(sweep), "--store", str(killed)]
    command += ["--workers", "2"]
    log = tmp_path / "killed.log"
    with log.open("wb") as output:
        # Its own session: the client and its workers form one process group to clean up after.
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    total = RESUMABLE_CELLS
    try:
        pending = total
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            pending = _pending_while_running(killed, total)
            if pending < total:
                break
            time.sleep(0.05)
        assert process.poll() is None, log.read_text()
        assert 0 < pending, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        _kill_group(process)
    pending_after_kill = len(store.pending_cells(killed))
    assert 0 < pending_after_kill < total

    # One local cluster (2 workers, BLAS pinned) for the resumed and the uninterrupted run.
    straight = tmp_path / "straight.zarr"
    with runner._client(2, None, ":0") as client:
        address = client.scheduler.address
        resumed = run(spec, killed, scheduler=address)
        assert run(spec, straight, scheduler=address).computed_cells == total
    assert resumed.skipped_cells == total - pending_after_kill > 0
    assert resumed.computed_cells == pending_after_kill
    assert resumed.failed_points == 0
    assert_same_cube(killed, straight)


@pytest.mark.distributed
def test_client_killed_while_writing_the_template_or_after_the_last_cell_resumes(
    tiny: SweepSpec, undisturbed: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(TINY)
    # The files the template writes, counted as the killed client will count them.
    template_writes = _count_writes(lambda: store.create_store(tmp_path / "counted.zarr", tiny))
    assert template_writes > 20
    moments = [("template", 1), ("template", template_writes // 2), ("template", template_writes)]
    for moment, count in [*moments, ("collected", 0)]:
        path = tmp_path / f"{moment}-{count}.zarr"
        arguments = ["run", str(sweep), "--store", str(path), "--workers", "1", "--no-progress"]
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_CLIENT, moment, str(count), *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=120)
        finally:
            _kill_group(process)
        assert process.returncode == -signal.SIGKILL, output.decode()
        partial = Path(f"{path}.partial")
        if moment == "template":
            # Half a template (none before the first file), never at the store's path: the next
            # run builds it again.
            assert not path.exists() and (partial.is_dir() or count == 1)
        else:
            assert store.pending_cells(path) == [] and not partial.exists()
            # Its lock file is left, the lock itself died with the process.
            assert Path(f"{path}.lock").exists()
        report = run(tiny, path, workers=1)
        assert report.ok and not partial.exists() and not Path(f"{path}.lock").exists()
        assert report.computed_cells == (0 if moment == "collected" else TINY_CELLS)
        assert_same_cube(path, undisturbed)


def _count_writes(action: Any) -> int:
    """How many files ``action()`` writes through zarr's local store."""
    writes = 0
    write = zarr.storage.LocalStore.set

    async def counted(self: zarr.storage.LocalStore, key: str, value: Any) -> None:
        nonlocal writes
        writes += 1
        await write(self, key, value)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zarr.storage.LocalStore, "set", counted)
        action()
    return writes


def _pending_while_running(path: Path, total: int) -> int:
    """Pending cells of a store being written by another process (``total`` until it can be read)."""
    if not (path / "zarr.json").exists():
        return total
    try:
        return len(store.pending_cells(path))
    except Exception:  # the template is being created
        return total


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Leave no process behind: the workers of a killed client exit when they see it gone (they
    watch their parent); whatever is left of its process group after 10 s is killed."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
        process.wait()


# ----------------------------------------------------------------------------------------------
# A store that cannot be written
# ----------------------------------------------------------------------------------------------


@pytest.mark.distributed
@pytest.mark.parametrize(
    ("code", "reason"), [(errno.ENOSPC, "No space left on device"), (errno.EACCES, "Permission denied")]
)
def test_full_disk_or_denied_write_stops_the_run_and_leaves_it_resumable(
    tiny: SweepSpec,
    undisturbed: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
    reason: str,
) -> None:
    from distributed import LocalCluster

    path = tmp_path / "tiny.zarr"
    store.create_store(path, tiny)
    # The disk fills (or the directory turns read-only) once two cells are written.
    write = zarr.storage.LocalStore.set
    written: list[str] = []

    async def failing(self: zarr.storage.LocalStore, key: str, value: Any) -> None:
        if sum(name.startswith("done/") for name in written) >= 2:
            raise OSError(code, reason, os.path.join(str(self.root), key))
        written.append(key)
        await write(self, key, value)

    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(TINY)
    # Threads in this process (so the workers see the patched store), BLAS on one thread as on
    # the undisturbed run's workers.
    with (
        threadpool_limits(1),
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
    ):
        arguments = ["run", str(sweep), "--store", str(path), "--scheduler", cluster.scheduler_address]
        monkeypatch.setattr(zarr.storage.LocalStore, "set", failing)
        assert main(arguments) == 1
        out = capsys.readouterr().out
        # Said plainly, once; the cells not written are pending (not failed).
        (stopped,) = [line for line in out.splitlines() if line.startswith("stopped: ")]
        assert f"{reason} ({path}" in stopped and "run again to resume" in stopped
        assert "failed points: 0" in out
        assert store.failed_cells(path) == {}
        assert len(store.pending_cells(path)) == TINY_CELLS - 2
        assert store.verify(path) == (2 * 2 * 2, [])

        monkeypatch.setattr(zarr.storage.LocalStore, "set", write)
        assert main(arguments) == 0
        assert f"cells: {TINY_CELLS - 2} computed, 2 skipped" in capsys.readouterr().out
    assert_same_cube(path, undisturbed)


# ----------------------------------------------------------------------------------------------
# Points that fail
# ----------------------------------------------------------------------------------------------


@pytest.mark.distributed
def test_theory_that_does_not_converge_fails_its_points_once_and_is_retried_on_demand(
    tiny: SweepSpec, undisturbed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    solve = theory.solve
    solved: list[tuple[str, float, float]] = []

    def unconverged(scenario: pipeline.Scenario, *, points: int) -> theory.TheoryResult:
        where = (scenario.loss, scenario.c, scenario.mu["norm"])
        solved.append(where)
        result = solve(scenario, points=points)
        if where == ("logistic", 0.5, 2.0):
            return dataclasses.replace(result, converged=False, note="wrong roots near 0")
        return result

    path = tmp_path / "tiny.zarr"
    with (
        threadpool_limits(1),
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
    ):
        monkeypatch.setattr(theory, "solve", unconverged)
        report = run(tiny, path, scheduler=cluster.scheduler_address, attempts=3)
        # Deterministic: solved once, not three times; its 2 trials failed, with the reason.
        assert solved.count(("logistic", 0.5, 2.0)) == 1
        assert report.failed_points == 2
        assert report.failures == ("theory at c[0], loss[0], signal[2]: did not converge",)
        point = open_cube(path).isel(c=0, loss=0, signal=2)
        assert (point["status"] == STATUS_FAILED).all() and not point["done"].any()
        assert str(point["error"].values[0]).endswith(": wrong roots near 0")
        assert not point["converged"] and (point["density"].notnull()).all()

        monkeypatch.setattr(theory, "solve", solve)
        again = run(tiny, path, scheduler=cluster.scheduler_address)
        assert (again.computed_cells, again.earlier_failed_points, again.ok) == (0, 2, False)
        retried = run(tiny, path, scheduler=cluster.scheduler_address, retry_failed=True)
        assert (retried.computed_cells, retried.ok) == (1, True)
    assert_same_cube(path, undisturbed)
