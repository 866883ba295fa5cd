"""The Dask runner: bit-identical cubes for any worker count, theory as solved, resume, failures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import get_task_stream
from threadpoolctl import threadpool_info, threadpool_limits

import pipeline
from pipeline import montecarlo, runner, store, theory
from pipeline.cli import main
from pipeline.families import CellData
from pipeline.families.glm import GLMFamily, draw_and_analyse
from pipeline.runner import RunReport, part_task, run_sweep, write_task
from pipeline.store import CellFailure, open_cube
from pipeline.sweep import SweepSpec, parse_sweep

TINY = """
name: tiny
p: 30
trials: 2
seed: 3
model: logistic
grid:
  c: [0.5, 2.0]
  loss: [logistic, exponential]
  signal: [0.0, 1.0, 2.0]
fixed: {mu: {angle: 90}}
theory: {points: 64}
"""

# Variables that the theory task fills, checked against pipeline.theory.solve.
THEORY_SCALARS = (
    "edge_left",
    "edge_right",
    "atom_zero",
    "negative_fraction",
    "mass",
    "converged",
    "residual",
)


def run(spec: SweepSpec, path: Path, **options: Any) -> RunReport:
    """``run_sweep`` as the tests call it: no progress bar, any free dashboard port."""
    return run_sweep(spec, path, progress=False, dashboard_address=":0", echo=None, **options)


def assert_same_cube(path_a: Path, path_b: Path) -> None:
    """Every variable and coordinate of two cubes equal bit for bit (NaN equal to NaN)."""
    a, b = open_cube(path_a), open_cube(path_b)
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        x, y = a[name].values, b[name].values
        nan = x.dtype.kind in "fc"
        assert np.array_equal(x, y, equal_nan=nan), name


@pytest.fixture(scope="module")
def tiny() -> SweepSpec:
    return parse_sweep(TINY)


@pytest.fixture(scope="module")
def tiny_stores(tiny: SweepSpec, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The tiny sweep run with one worker and with two."""
    stores = {}
    for workers in (1, 2):
        path = tmp_path_factory.mktemp(f"workers{workers}") / "tiny.zarr"
        report = run(tiny, path, workers=workers)
        assert report == RunReport(computed_cells=6, skipped_cells=0, failed_points=0, store=str(path))
        stores[workers] = path
    return stores


# ----------------------------------------------------------------------------------------------
# Whole runs on a local cluster
# ----------------------------------------------------------------------------------------------


@pytest.mark.distributed
def test_one_and_two_workers_give_bit_identical_cubes(tiny_stores: dict[int, Path]) -> None:
    one, two = open_cube(tiny_stores[1]), open_cube(tiny_stores[2])
    assert bool(one["done"].all()) and bool(two["done"].all())
    assert one["eigenvalues"].shape == (2, 2, 3, 2, 30)
    for name in ("eigenvalues", "mc_align"):
        assert np.array_equal(one[name].values, two[name].values, equal_nan=True), name
    assert_same_cube(tiny_stores[1], tiny_stores[2])


@pytest.mark.distributed
def test_cube_holds_the_monte_carlo_of_each_draw(tiny: SweepSpec, tiny_stores: dict[int, Path]) -> None:
    cube = open_cube(tiny_stores[2])
    # The workers run BLAS on one thread: so must the reference for bit equality.
    with threadpool_limits(1):
        drawn = montecarlo.draw(tiny.scenario(1, 0, 2), tiny.p, tiny.seed_for(1, 2, 1))
        result = montecarlo.analyse(drawn, tiny.scenario(1, 1, 2), k=tiny.montecarlo.k)
    assert np.array_equal(cube["eigenvalues"].values[1, 1, 2, 1], result.eigenvalues)


@pytest.mark.distributed
def test_theory_in_the_cube_equals_solve(tiny: SweepSpec, tiny_stores: dict[int, Path]) -> None:
    cube = open_cube(tiny_stores[1])
    for i_c, i_loss, i_signal in tiny.points():
        with threadpool_limits(1):
            result = theory.solve(tiny.scenario(i_c, i_loss, i_signal), points=tiny.theory.points)
        point = cube.isel(c=i_c, loss=i_loss, signal=i_signal)
        where = (i_c, i_loss, i_signal)
        assert np.array_equal(point["density"].values, result.density), where
        assert np.array_equal(point["density_x"].values, result.x), where
        for name in THEORY_SCALARS:
            assert np.array_equal(point[name].values, getattr(result, name)), (where, name)
        n_spikes = len(result.spikes)
        spikes = point["spike"].values
        assert np.array_equal(spikes[:n_spikes], result.spikes), where
        assert np.isnan(spikes[n_spikes:]).all(), where
        for target in ("mu", "w_star", "w"):
            align = point["spike_align"].sel(target=target).values
            assert np.array_equal(align[:n_spikes], result.spike_align[target], equal_nan=True), where


@pytest.mark.distributed
def test_run_again_skips_every_done_cell(tiny: SweepSpec, tiny_stores: dict[int, Path]) -> None:
    before = open_cube(tiny_stores[2])["eigenvalues"].values
    report = run(tiny, tiny_stores[2], workers=1)
    assert (report.computed_cells, report.skipped_cells, report.failed_points) == (0, 6, 0)
    assert np.array_equal(open_cube(tiny_stores[2])["eigenvalues"].values, before)


@pytest.mark.distributed
def test_local_workers_run_blas_on_one_thread() -> None:
    def blas_threads() -> dict[str, Any]:
        import numpy  # noqa: F401  (load BLAS)

        return {
            "environ": os.environ.get("OPENBLAS_NUM_THREADS"),
            "threads": {pool["num_threads"] for pool in threadpool_info()},
        }

    with runner._client(2, None, ":0") as client:
        found = client.run(blas_threads)
    assert len(found) == 2
    for worker in found.values():
        assert worker == {"environ": "1", "threads": {1}}


@pytest.mark.distributed
def test_failed_point_is_recorded_and_the_run_goes_on(
    tiny: SweepSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from distributed import LocalCluster

    solve = theory.solve

    def failing(scenario: pipeline.Scenario, *, points: int) -> theory.TheoryResult:
        if scenario.loss == "exponential" and scenario.c == 2.0 and scenario.mu["norm"] == 1.0:
            raise FloatingPointError("the solver diverged")
        return solve(scenario, points=points)

    path = tmp_path / "tiny.zarr"
    # Threads in this process, so that the workers see the patched solver.
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        monkeypatch.setattr(theory, "solve", failing)
        report = run(tiny, path, scheduler=cluster.scheduler_address, attempts=2)
        # One theory point (c = 2, exponential, signal = 1) for each of its 2 trials.
        assert report.computed_cells == 6
        assert report.failed_points == 2
        assert len(report.failures) == 1
        assert "theory at c[1], loss[1], signal[1]" in report.failures[0]
        assert "FloatingPointError: the solver diverged (2 attempts)" in report.failures[0]
        assert not report.ok

        cube = open_cube(path)
        done = cube["done"].values
        assert not done[1, 1, 1].any()
        assert done.sum() == done.size - 2
        assert (cube["status"].values[1, 1, 1] == 2).all()
        assert store.pending_cells(path) == []
        assert store.pending_cells(path, failed=True) == [(1, 1)]

        # Run again: the failed points are left as they are, and said to be there (exit code 1).
        sweep = tmp_path / "tiny.yaml"
        sweep.write_text(TINY)
        arguments = ["run", str(sweep), "--store", str(path), "--scheduler", cluster.scheduler_address]
        assert main(arguments) == 1
        out = capsys.readouterr().out
        assert "cells: 0 computed, 6 skipped (already done or failed)" in out
        assert "failed points: 0" in out
        assert "failed in an earlier run and not tried again: 2 points" in out
        assert main(["status", str(path)]) == 0
        out = capsys.readouterr().out
        assert "cells: 5 done, 1 failed, 0 pending, 6 total" in out
        assert "c=2.0, loss=exponential, signal=1.0, trial=0: theory: theory at c[1]" in out

        # --retry-failed tries them again, here with --attempts 1: still failing, once per point.
        assert main([*arguments, "--retry-failed", "--attempts", "1"]) == 1
        out = capsys.readouterr().out
        assert "cells: 1 computed, 5 skipped (already done or failed)" in out
        assert "FloatingPointError: the solver diverged (1 attempt)" in out

        monkeypatch.setattr(theory, "solve", solve)
        assert main([*arguments, "--retry-failed"]) == 0
        assert "failed points: 0" in capsys.readouterr().out
    assert bool(open_cube(path)["done"].all())


# ----------------------------------------------------------------------------------------------
# Task functions, in this process
# ----------------------------------------------------------------------------------------------


def test_a_part_that_raises_is_retried_then_recorded_as_failed(
    tiny: SweepSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    solve = theory.solve

    def flaky(scenario: pipeline.Scenario, *, points: int) -> theory.TheoryResult:
        calls.append(scenario)
        if len(calls) < 3:
            raise RuntimeError(f"try {len(calls)}")
        return solve(scenario, points=points)

    monkeypatch.setattr(theory, "solve", flaky)
    result = part_task(tiny, (0, 2), ("theory", 1), attempts=3)
    assert isinstance(result, theory.TheoryResult)
    assert len(calls) == 3

    calls.clear()
    failure = part_task(tiny, (0, 2), ("theory", 1), attempts=2)
    assert failure == CellFailure("theory at c[0], loss[1], signal[2]: RuntimeError: try 2 (2 attempts)")
    assert len(calls) == 2


def test_draw_and_analyse_analyses_one_draw_under_every_loss(tiny: SweepSpec) -> None:
    results = draw_and_analyse(tiny, 1, 2, 1, attempts=1)
    assert isinstance(results, list)
    assert len(results) == 2
    for i_loss, result in enumerate(results):
        expected = montecarlo.sample(tiny.scenario(1, i_loss, 2), tiny.p, tiny.seed_for(1, 2, 1), k=2)
        assert np.array_equal(result.eigenvalues, expected.eigenvalues)


def test_draw_and_analyse_records_a_failing_draw(tiny: SweepSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("no room")

    monkeypatch.setattr(montecarlo, "draw", broken)
    assert draw_and_analyse(tiny, 0, 0, 1, attempts=1) == CellFailure(
        "Monte Carlo at c[0], signal[0], trial 1: MemoryError: no room (1 attempt)"
    )


def test_draw_and_analyse_records_a_failing_loss(tiny: SweepSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    analyse = montecarlo.analyse

    def picky(drawn: montecarlo.Draw, scenario: pipeline.Scenario, *, k: int) -> montecarlo.MonteCarloResult:
        if scenario.loss == "exponential":
            raise RuntimeError("the exponential loss's curvature is not finite")
        return analyse(drawn, scenario, k=k)

    monkeypatch.setattr(montecarlo, "analyse", picky)
    results = draw_and_analyse(tiny, 0, 0, 1, attempts=2)
    assert isinstance(results, list)
    assert isinstance(results[0], montecarlo.MonteCarloResult)
    assert results[1] == CellFailure(
        "Monte Carlo at c[0], signal[0], trial 1, loss[1]: RuntimeError: the exponential loss's curvature "
        "is not finite (2 attempts)"
    )


def test_write_task_counts_the_failed_points_its_family_reports(
    tiny: SweepSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = []
    monkeypatch.setattr(store, "write_cell", lambda *args: written.append(args))
    errors = np.array([["theory: broke", ""], ["", "montecarlo: broke"]], dtype=np.dtypes.StringDType())
    data = CellData({}, errors.reshape(1, 2, 1, 2), ("theory broke", "draw broke"))
    seen = []

    def assemble(self: GLMFamily, spec: SweepSpec, cell: tuple[int, ...], results: list[Any]) -> CellData:
        seen.append((cell, results))
        return data

    monkeypatch.setattr(GLMFamily, "assemble", assemble)
    outcome = write_task("cube.zarr", tiny, (1, 2), ["results"], 1)
    assert outcome == runner.CellOutcome((1, 2), 2, ("theory broke", "draw broke"))
    assert seen == [((1, 2), ["results"])]
    assert written == [("cube.zarr", tiny, (1, 2), data)]


def test_write_task_that_cannot_write_fails_the_whole_cell(
    tiny: SweepSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unwritable(*args: Any) -> None:
        raise OSError("disk full")

    errors = np.full((1, 2, 1, 2), "", dtype=np.dtypes.StringDType())
    monkeypatch.setattr(GLMFamily, "assemble", lambda *args: CellData({}, errors))
    monkeypatch.setattr(store, "write_cell", unwritable)
    outcome = write_task("cube.zarr", tiny, (0, 0), [], 2)
    assert outcome.failed_points == 4
    assert outcome.messages == ("writing cell c[0], signal[0]: OSError: disk full (2 attempts)",)


def test_spec_travels_to_workers_intact(tiny: SweepSpec) -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(tiny))
    assert copy == tiny
    assert copy.source_text == tiny.source_text


def test_run_sweep_refuses_workers_with_a_scheduler(tiny: SweepSpec, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        run_sweep(tiny, tmp_path / "x.zarr", workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="attempts"):
        run_sweep(tiny, tmp_path / "x.zarr", attempts=0)
    assert not (tmp_path / "x.zarr").exists()


def test_cheap_draws_are_batched_per_cell_and_give_the_same_results(tiny: SweepSpec) -> None:
    # A tiny point's trials are one part; its results are those of one draw per trial.
    family = GLMFamily()
    assert family.parts(tiny, (1, 2)) == [("theory", 0), ("theory", 1), ("montecarlo", 0, 2)]
    batch = family.compute(tiny, (1, 2), ("montecarlo", 0, 2), attempts=1)
    single = [draw_and_analyse(tiny, 1, 2, trial, attempts=1) for trial in (0, 1)]
    for batched, alone in zip(batch, single, strict=True):
        assert isinstance(batched, list) and isinstance(alone, list)
        for a, b in zip(batched, alone, strict=True):
            assert isinstance(a, montecarlo.MonteCarloResult) and isinstance(b, montecarlo.MonteCarloResult)
            assert np.array_equal(a.eigenvalues, b.eigenvalues)
    # A costly point's trials are a part each.
    costly = parse_sweep(TINY.replace("p: 30", "p: 2000"))
    assert family.parts(costly, (0, 0))[2:] == [("montecarlo", 0, 1), ("montecarlo", 1, 2)]


# ----------------------------------------------------------------------------------------------
# Batches of whole cells
# ----------------------------------------------------------------------------------------------


def test_plan_batches_cheap_cells_and_tapers_to_single_cells() -> None:
    spec = parse_sweep(TINY.replace("signal: [0.0, 1.0, 2.0]", "signal: {start: 0, stop: 3, num: 100}"))
    cells = [(i_c, i_s) for i_c in range(2) for i_s in range(100)]
    tasks = runner._plan(spec, cells, workers=2)
    assert tasks == runner._plan(spec, cells, workers=2)
    # Every cell once, in order; whole batches of the target cost first, single cells at the end.
    assert [cell for task in tasks for cell in task.cells] == cells
    family = GLMFamily()
    assert family.cell_seconds(spec, (0, 0)) < runner._BATCH_SECONDS / 2
    assert sum(family.cell_seconds(spec, cell) for cell in tasks[0].cells) >= runner._BATCH_SECONDS
    sizes = [len(task.cells) for task in tasks]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1
    assert not any(task.fine for task in tasks)


def test_plan_gives_costly_cells_their_own_graph() -> None:
    spec = parse_sweep(TINY.replace("p: 30", "p: 2000"))
    assert GLMFamily().cell_seconds(spec, (0, 0)) >= runner._BATCH_SECONDS
    tasks = runner._plan(spec, [(0, 0), (0, 1), (1, 2)], workers=1)
    assert tasks == [runner._Task((cell,), fine=True) for cell in [(0, 0), (0, 1), (1, 2)]]


@pytest.mark.distributed
def test_batched_and_fine_grained_sweeps_give_bit_identical_cubes(
    tiny: SweepSpec, tiny_stores: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with runner._client(2, None, ":0") as client:
        address = client.scheduler.address
        # The tasks are planned in this process: the forced batch size holds for the run.
        for cells_per_task in (0, 4):
            monkeypatch.setattr(runner, "_CELLS_PER_TASK", cells_per_task)
            path = tmp_path / f"batch{cells_per_task}.zarr"
            with get_task_stream(client) as stream:
                assert run(tiny, path, scheduler=address).computed_cells == 6
            kinds = {str(task["key"]).split("-", 1)[0] for task in stream.data}
            assert kinds == ({"cells"} if cells_per_task else {"theory", "montecarlo", "write_cell"})
            assert_same_cube(path, tiny_stores[1])


@pytest.mark.distributed
def test_failure_inside_a_batch_fails_its_points_only_and_resume_skips_done_cells(
    tiny: SweepSpec, tiny_stores: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    solve = theory.solve
    solved: list[tuple[str, float, float]] = []
    failing = True

    def counted(scenario: pipeline.Scenario, *, points: int) -> theory.TheoryResult:
        where = (scenario.loss, scenario.c, scenario.mu["norm"])
        solved.append(where)
        if failing and where == ("exponential", 2.0, 1.0):
            raise FloatingPointError("the solver diverged")
        return solve(scenario, points=points)

    # Two batches of three cells; the failing point is in cell (1, 1), in the middle of the second.
    monkeypatch.setattr(runner, "_CELLS_PER_TASK", 3)
    path = tmp_path / "tiny.zarr"
    # Threads in this process, so that the workers see the patched solver; BLAS on one thread as
    # on the workers of tiny_stores, for bit equality.
    with (
        threadpool_limits(1),
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
    ):
        monkeypatch.setattr(theory, "solve", counted)
        report = run(tiny, path, scheduler=cluster.scheduler_address, attempts=1)
        assert (report.computed_cells, report.failed_points) == (6, 2)
        assert report.failures == (
            "theory at c[1], loss[1], signal[1]: FloatingPointError: the solver diverged (1 attempt)",
        )
        done = open_cube(path)["done"].values
        assert not done[1, 1, 1].any() and done.sum() == done.size - 2
        assert store.pending_cells(path, failed=True) == [(1, 1)]

        failing = False
        solved.clear()
        resumed = run(tiny, path, scheduler=cluster.scheduler_address, retry_failed=True)
    assert (resumed.computed_cells, resumed.skipped_cells, resumed.failed_points) == (1, 5, 0)
    # Only the pending cell was computed again: its two losses.
    assert sorted(solved) == [("exponential", 2.0, 1.0), ("logistic", 2.0, 1.0)]
    assert_same_cube(path, tiny_stores[1])


@pytest.mark.distributed
def test_batch_that_dies_counts_only_its_cells_left_pending(
    tiny: SweepSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    cell_task = runner.cell_task

    def crashing(path: str, spec: SweepSpec, cell: tuple[int, ...], attempts: int) -> runner.CellOutcome:
        if cell == (1, 1):
            raise SystemError("lost outside the retries")
        return cell_task(path, spec, cell, attempts)

    monkeypatch.setattr(runner, "_CELLS_PER_TASK", 3)
    monkeypatch.setattr(runner, "cell_task", crashing)
    path = tmp_path / "tiny.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        report = run(tiny, path, scheduler=cluster.scheduler_address)
    # The second batch wrote (1, 0) and died at (1, 1): (1, 1) and (1, 2) stay pending, 4 points each.
    assert store.pending_cells(path) == [(1, 1), (1, 2)]
    assert report.failed_points == 8
    assert [message.split(":")[0] for message in report.failures] == [
        "cell c[1], signal[1]",
        "cell c[1], signal[2]",
    ]
    assert "SystemError: lost outside the retries" in report.failures[0]


@pytest.mark.distributed
def test_workers_without_the_blas_environment_are_pinned_and_agree(
    tiny: SweepSpec, tiny_stores: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dask
    from distributed import Client, LocalCluster

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info()}

    # Workers as `dask worker --no-nanny` starts them: no BLAS variables before numpy loads.
    for name in runner.WORKER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "unpinned.zarr"
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": {}}),
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        before = client.run(blas_threads)
        report = run(tiny, path, scheduler=cluster.scheduler_address)
        after = client.run(blas_threads)
    if runner._cores() > 1:
        assert all(max(threads) > 1 for threads in before.values()), before
    assert report.ok
    assert list(after.values()) == [{1}, {1}]
    assert_same_cube(path, tiny_stores[1])
