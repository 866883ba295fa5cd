"""The result cube (``pipeline.store``): template, cell writes, concurrency, failures, checks."""

from __future__ import annotations

import dataclasses
import errno
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

import pipeline
from pipeline import montecarlo, store, theory
from pipeline.errors import HessweepError, StoreError
from pipeline.families.glm import cell_data
from pipeline.montecarlo import MonteCarloResult
from pipeline.scenario import TARGETS
from pipeline.store import (
    CUBE_FORMAT,
    MAX_SPIKES,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
    CellFailure,
    check_store,
    create_store,
    failed_cells,
    open_cube,
    pending_cells,
    summary,
)
from pipeline.sweep import SweepSpec, parse_sweep
from pipeline.theory import TheoryResult

SMALL = """
name: small
p: 20
trials: 2
seed: 5
grid:
  c: [0.5, 2.0]
  loss: [logistic, exponential]
  signal: [0.0, 1.0, 2.5]
fixed: {mu: {angle: 90}}
theory: {points: 64}
"""

VARIABLES = {
    "eigenvalues": ("c", "loss", "signal", "trial", "eig"),
    "mc_align": ("c", "loss", "signal", "trial", "k", "target"),
    "mc_negative_fraction": ("c", "loss", "signal", "trial"),
    "density": ("c", "loss", "signal", "x"),
    "density_x": ("c", "loss", "signal", "x"),
    "edge_left": ("c", "loss", "signal"),
    "edge_right": ("c", "loss", "signal"),
    "bulk_count": ("c", "loss", "signal"),
    "spike": ("c", "loss", "signal", "spike_index"),
    "spike_align": ("c", "loss", "signal", "spike_index", "target"),
    "atom_zero": ("c", "loss", "signal"),
    "negative_fraction": ("c", "loss", "signal"),
    "mass": ("c", "loss", "signal"),
    "converged": ("c", "loss", "signal"),
    "residual": ("c", "loss", "signal"),
    "spikes_defined": ("c", "loss", "signal"),
    "note": ("c", "loss", "signal"),
    "status": ("c", "loss", "signal", "trial"),
    "error": ("c", "loss", "signal", "trial"),
    "done": ("c", "loss", "signal", "trial"),
}


@pytest.fixture(scope="module")
def spec() -> SweepSpec:
    return parse_sweep(SMALL)


@pytest.fixture
def cube_path(tmp_path: Path, spec: SweepSpec) -> Path:
    path = tmp_path / "small.zarr"
    create_store(path, spec)
    return path


# Synthetic but well-shaped results: cheap, different at every point, with NaN and ±inf inside.


def fake_theory(spec: SweepSpec, i_c: int, i_loss: int, i_signal: int) -> TheoryResult:
    rng = np.random.default_rng((1, i_c, i_loss, i_signal))
    points = spec.theory.points
    n_spikes = (i_c + i_loss + i_signal) % (MAX_SPIKES + 1)
    align = {target: rng.random(n_spikes) for target in TARGETS}
    align["w"][:] = np.nan  # a zero target: NaN, which must not read as "not run"
    return TheoryResult(
        x=np.sort(rng.normal(size=points)),
        density=rng.random(points),
        atom_zero=float(rng.random()),
        edges=np.array([[-np.inf if i_loss else -1.0, 2.0 + i_c]]),
        spikes=np.sort(rng.normal(size=n_spikes)),
        spike_align=align,
        spikes_defined=bool(i_loss == 0),
        negative_fraction=float(rng.random()),
        mass=1.0,
        converged=True,
        residual=float(rng.random()) * 1e-12,
        note=f"point {i_c} {i_loss} {i_signal} ✓",
    )


def fake_montecarlo(spec: SweepSpec, i_c: int, i_loss: int, i_signal: int, trial: int) -> MonteCarloResult:
    rng = np.random.default_rng((2, i_c, i_loss, i_signal, trial))
    k = spec.montecarlo.k
    return MonteCarloResult(
        eigenvalues=np.sort(rng.normal(size=spec.p)),
        align_top={target: rng.random(k) for target in TARGETS},
        align_bottom={target: rng.random(k) for target in TARGETS},
        p=spec.p,
        n=round(spec.p / spec.grid.c[i_c]),
        negative_fraction=float(rng.random()),
    )


def write_cell(path: Path, spec: SweepSpec, i_c: int, i_signal: int, theory: Any, montecarlo: Any) -> None:
    """:func:`pipeline.store.write_cell` of the GLM results of one cell (one per loss, one per trial)."""
    store.write_cell(path, spec, (i_c, i_signal), cell_data(spec, (i_c, i_signal), theory, montecarlo))


def fake_cell(spec: SweepSpec, i_c: int, i_signal: int) -> tuple[list[Any], list[Any]]:
    """Results of every loss and trial of one cell, as lists that a test may put failures into."""
    _, n_loss, _, trials = spec.shape
    th = [fake_theory(spec, i_c, i, i_signal) for i in range(n_loss)]
    mc = [[fake_montecarlo(spec, i_c, i, i_signal, t) for i in range(n_loss)] for t in range(trials)]
    return th, mc


def all_cells(spec: SweepSpec) -> list[tuple[int, int]]:
    n_c, _, n_signal, _ = spec.shape
    return [(i, j) for i in range(n_c) for j in range(n_signal)]


def raw_arrays(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(path, mode="r")
    return {name: np.asarray(array[...]) for name, array in group.arrays()}


# ----------------------------------------------------------------------------------------------


def test_template_layout_and_attributes(cube_path: Path, spec: SweepSpec) -> None:
    cube = open_cube(cube_path)
    assert dict(cube.sizes) == {
        "c": 2, "loss": 2, "signal": 3, "trial": 2, "eig": 20, "x": 64, "k": 4, "target": 3, "spike_index": 3,
    }  # fmt: skip
    assert {name: cube[name].dims for name in cube.data_vars} == VARIABLES
    assert cube["c"].values.tolist() == [0.5, 2.0]
    assert cube["loss"].values.tolist() == ["logistic", "exponential"]
    assert cube["signal"].values.tolist() == [0.0, 1.0, 2.5]
    assert cube["target"].values.tolist() == list(TARGETS)
    assert cube["side"].values.tolist() == ["bottom", "bottom", "top", "top"]
    assert cube["rank"].values.tolist() == [0, 1, 0, 1]
    assert not cube["done"].values.any()
    assert (cube["status"].values == STATUS_PENDING).all()
    assert cube["status"].dtype == np.int8
    assert cube["bulk_count"].dtype == np.int16 and (cube["bulk_count"].values == 0).all()
    assert (cube["error"].values == "").all()
    assert np.isnan(cube["eigenvalues"].values).all()

    attrs = cube.attrs
    assert attrs["sweep_yaml"] == SMALL
    assert json.loads(attrs["spec"]) == spec.to_dict()
    assert attrs["seed"] == 5
    assert set(attrs["versions"]) == {"hessweep", "numpy", "scipy", "dask", "distributed", "xarray", "zarr"}
    assert attrs["versions"]["hessweep"] == pipeline.__version__
    assert attrs["versions"]["zarr"] == zarr.__version__
    assert datetime.fromisoformat(attrs["created"]).utcoffset() is not None

    # Chunks: one cell wide along c and signal, whole along the rest; explicit fill values.
    group = zarr.open_group(cube_path, mode="r")
    assert group.metadata.zarr_format == 3
    eigenvalues = group["eigenvalues"]
    assert isinstance(eigenvalues, zarr.Array)
    assert eigenvalues.chunks == (1, 2, 1, 2, 20)
    fills: dict[str, Any] = {name: array.metadata.fill_value for name, array in group.arrays()}
    assert np.isnan(float(fills["eigenvalues"])) and fills["status"] == 0 and fills["done"] is np.False_
    assert fills["error"] == ""
    # Nothing but the coordinates is stored yet.
    assert not list((cube_path / "eigenvalues").glob("c/**/*.*")) and not (cube_path / "done" / "c").exists()
    assert pending_cells(cube_path) == all_cells(spec)


def test_create_store_refuses_an_existing_path(cube_path: Path, spec: SweepSpec) -> None:
    with pytest.raises(StoreError, match="already exists"):
        create_store(cube_path, spec)
    write_cell(cube_path, spec, 0, 0, *fake_cell(spec, 0, 0))
    create_store(cube_path, spec, overwrite=True)
    assert pending_cells(cube_path) == all_cells(spec)


def test_create_store_never_leaves_a_half_written_template(
    tmp_path: Path, spec: SweepSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cube.zarr"
    # What a process killed while writing the template leaves beside the store: removed, rebuilt.
    partial = tmp_path / "cube.zarr.partial"
    partial.mkdir()
    (partial / "zarr.json").write_text("{")
    create_store(path, spec)
    assert not partial.exists()
    check_store(path, spec)
    assert pending_cells(path) == all_cells(spec)

    # A write that fails while the template is written (a full disk) leaves nothing at all.
    to_zarr = xr.Dataset.to_zarr

    def full_disk(self: xr.Dataset, store: Any, **options: Any) -> Any:
        encoding = {name: value for name, value in options.pop("encoding").items() if name != "done"}
        to_zarr(self.drop_vars(["done"]), store, encoding=encoding, **options)
        raise OSError(errno.ENOSPC, "No space left on device", str(store))

    monkeypatch.setattr(xr.Dataset, "to_zarr", full_disk)
    other = tmp_path / "other.zarr"
    with pytest.raises(OSError, match="No space left on device"):
        create_store(other, spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zarr"]


def test_check_store_refuses_an_incomplete_cube(tmp_path: Path, spec: SweepSpec) -> None:
    from pipeline.families import family_of
    from pipeline.store import _template

    path = tmp_path / "cube.zarr"
    # A template written without its last step, the consolidated metadata (as a hessweep before
    # the atomic creation could leave one): not trusted.
    template = _template(spec, family_of(spec).layout(spec))
    template.to_zarr(path, mode="w", compute=False, zarr_format=3, consolidated=False)
    with pytest.raises(StoreError, match=r"an incomplete cube \(no consolidated metadata\)"):
        check_store(path, spec)


def test_cell_round_trips_exactly_with_real_results(cube_path: Path, spec: SweepSpec) -> None:
    i_c, i_signal = 0, 1
    _, n_loss, _, trials = spec.shape
    th = [theory.solve(spec.scenario(i_c, i, i_signal), points=spec.theory.points) for i in range(n_loss)]
    draws = [
        montecarlo.draw(spec.scenario(i_c, 0, i_signal), spec.p, spec.seed_for(i_c, i_signal, t))
        for t in range(trials)
    ]
    mc = [
        [montecarlo.analyse(d, spec.scenario(i_c, i, i_signal), k=spec.montecarlo.k) for i in range(n_loss)]
        for d in draws
    ]
    write_cell(cube_path, spec, i_c, i_signal, th, mc)

    cube = open_cube(cube_path)
    k = spec.montecarlo.k
    for i_loss, loss in enumerate(spec.grid.loss):
        point = cube.sel(c=spec.grid.c[i_c], loss=loss, signal=spec.grid.signal[i_signal]).load()
        result = th[i_loss]
        np.testing.assert_array_equal(point["density"].values, result.density)
        np.testing.assert_array_equal(point["density_x"].values, result.x)
        n = len(result.spikes)
        np.testing.assert_array_equal(point["spike"].values[:n], result.spikes)
        assert np.isnan(point["spike"].values[n:]).all()
        for i_target, target in enumerate(TARGETS):
            np.testing.assert_array_equal(
                point["spike_align"].values[:n, i_target], result.spike_align[target]
            )
        for name in ("atom_zero", "negative_fraction", "mass", "residual", "edge_left", "edge_right"):
            assert point[name].item() == getattr(result, name) or np.isnan(getattr(result, name)), name
        assert point["bulk_count"].item() == result.edges.shape[0] == 1
        assert point["converged"].item() is result.converged
        assert point["spikes_defined"].item() is result.spikes_defined
        assert point["note"].item() == result.note
        for trial in range(trials):
            at = point.sel(trial=trial)
            sample = mc[trial][i_loss]
            np.testing.assert_array_equal(at["eigenvalues"].values, sample.eigenvalues)
            assert at["mc_negative_fraction"].item() == sample.negative_fraction
            for i_target, target in enumerate(TARGETS):
                bottom = at["mc_align"].sel(target=target, k=at["side"] == "bottom")
                top = at["mc_align"].sel(target=target, k=at["side"] == "top")
                np.testing.assert_array_equal(bottom.values, sample.align_bottom[target])
                np.testing.assert_array_equal(top.values, sample.align_top[target])
                np.testing.assert_array_equal(at["mc_align"].values[k:, i_target], sample.align_top[target])
        assert (point["status"].values == STATUS_DONE).all()
        assert point["done"].values.all()
        assert (point["error"].values == "").all()

    # The other cells are untouched.
    done = cube["done"].values
    assert done[i_c, :, i_signal, :].all() and done.sum() == n_loss * trials
    assert (i_c, i_signal) not in pending_cells(cube_path)
    assert len(pending_cells(cube_path)) == len(all_cells(spec)) - 1


def test_two_processes_in_any_order_equal_a_sequential_write(tmp_path: Path, spec: SweepSpec) -> None:
    cells = all_cells(spec)
    sequential = tmp_path / "sequential.zarr"
    create_store(sequential, spec)
    for cell in cells:
        write_cell(sequential, spec, *cell, *fake_cell(spec, *cell))

    parallel = tmp_path / "parallel.zarr"
    create_store(parallel, spec)
    shuffled = cells[:]
    random.Random(4).shuffle(shuffled)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        blocks = {cell: cell_data(spec, cell, *fake_cell(spec, *cell)) for cell in shuffled}
        futures = [pool.submit(store.write_cell, parallel, spec, cell, blocks[cell]) for cell in shuffled]
        for future in futures:
            future.result()

    assert pending_cells(parallel) == []
    one, other = raw_arrays(sequential), raw_arrays(parallel)
    assert one.keys() == other.keys()
    for name in one:
        if one[name].dtype.kind == "T":
            assert one[name].tolist() == other[name].tolist(), name
        else:
            assert one[name].tobytes() == other[name].tobytes(), name
    assert one["done"].all()
    # NaN results of written points are data, told apart from "not run" by done/status only.
    assert np.isnan(one["spike_align"][..., TARGETS.index("w")]).all()


def test_pending_cells_shrink_as_cells_are_written(cube_path: Path, spec: SweepSpec) -> None:
    remaining = all_cells(spec)
    for cell in [(1, 2), (0, 0), (1, 0)]:
        write_cell(cube_path, spec, *cell, *fake_cell(spec, *cell))
        remaining.remove(cell)
        assert pending_cells(cube_path) == remaining
    counts = summary(cube_path)
    assert counts["done"] == 3 * 4 and counts["failed"] == 0 and counts["total"] == 24
    assert counts["pending"] == 24 - 12
    assert counts["cells"] == {"total": 6, "done": 3, "failed": 0, "pending": 3}
    assert counts["remarks"] == []  # the GLM family fails its doubtful points instead


def test_failures_are_recorded_and_not_marked_done(cube_path: Path, spec: SweepSpec) -> None:
    th, mc = fake_cell(spec, 1, 1)
    th[1] = CellFailure("RuntimeError: the solver diverged")
    mc[0] = CellFailure("RuntimeError: dsytrd failed")
    write_cell(cube_path, spec, 1, 1, th, mc)

    cube = open_cube(cube_path).isel(c=1, signal=1).load()
    status, done, error = cube["status"].values, cube["done"].values, cube["error"].values
    # [loss, trial]: logistic trial 1 is the only complete point.
    assert status.tolist() == [[STATUS_FAILED, STATUS_DONE], [STATUS_FAILED, STATUS_FAILED]]
    assert done.tolist() == [[False, True], [False, False]]
    assert error[0, 0] == "montecarlo: RuntimeError: dsytrd failed"
    assert error[0, 1] == ""
    assert error[1, 0] == "theory: RuntimeError: the solver diverged; montecarlo: RuntimeError: dsytrd failed"
    assert error[1, 1] == "theory: RuntimeError: the solver diverged"
    # What succeeded is written; what failed is NaN.
    np.testing.assert_array_equal(cube["density"].values[0], th[0].density)
    assert np.isnan(cube["density"].values[1]).all()
    assert np.isnan(cube["eigenvalues"].values[:, 0]).all()
    np.testing.assert_array_equal(cube["eigenvalues"].values[1, 1], mc[1][1].eigenvalues)
    # No point of the cell is pending: a run leaves it, a run with --retry-failed computes it.
    assert (1, 1) not in pending_cells(cube_path)
    assert (1, 1) in pending_cells(cube_path, failed=True)
    assert failed_cells(cube_path) == {(1, 1): 3}

    counts = summary(cube_path)
    assert (counts["done"], counts["failed"], counts["pending"]) == (1, 3, 20)
    assert counts["cells"] == {"total": 6, "done": 0, "failed": 1, "pending": 5}
    assert [entry["failed"] for entry in counts["axes"]["loss"]] == [1, 2]
    assert [entry["failed"] for entry in counts["axes"]["c"]] == [0, 3]
    assert [entry["done"] for entry in counts["axes"]["signal"]] == [0, 1, 0]
    assert counts["errors"][0] == {
        "c": 2.0,
        "loss": "logistic",
        "signal": 1.0,
        "trial": 0,
        "message": "montecarlo: RuntimeError: dsytrd failed",
    }
    json.dumps(counts)

    # A per-loss Monte Carlo failure, then a retry that succeeds: the cell is done, the error gone.
    th, mc = fake_cell(spec, 1, 1)
    mc[1][0] = CellFailure("ValueError: bad")
    write_cell(cube_path, spec, 1, 1, th, mc)
    status = open_cube(cube_path)["status"].isel(c=1, signal=1).values
    assert status.tolist() == [[STATUS_DONE, STATUS_FAILED], [STATUS_DONE, STATUS_DONE]]
    write_cell(cube_path, spec, 1, 1, *fake_cell(spec, 1, 1))
    again = open_cube(cube_path).isel(c=1, signal=1)
    assert again["done"].values.all() and (again["error"].values == "").all()
    assert (1, 1) not in pending_cells(cube_path, failed=True)
    assert failed_cells(cube_path) == {}


def test_a_theory_that_did_not_converge_is_written_but_fails_its_points(
    cube_path: Path, spec: SweepSpec
) -> None:
    th, mc = fake_cell(spec, 0, 1)
    th[1] = dataclasses.replace(th[1], converged=False, mass=1.25, note="unresolved near 0")
    write_cell(cube_path, spec, 0, 1, th, mc)

    cube = open_cube(cube_path).isel(c=0, signal=1).load()
    assert cube["done"].values.tolist() == [[True, True], [False, False]]
    assert (cube["status"].values[1] == STATUS_FAILED).all()
    message = "theory: did not converge (mass 1.25, residual {:.3g}): unresolved near 0"
    assert (cube["error"].values[1] == message.format(th[1].residual)).all()
    # Its results are there for inspection, flagged.
    np.testing.assert_array_equal(cube["density"].values[1], th[1].density)
    np.testing.assert_array_equal(cube["eigenvalues"].values[1, 0], mc[0][1].eigenvalues)
    assert not cube["converged"].values[1] and cube["mass"].values[1] == 1.25
    assert failed_cells(cube_path) == {(0, 1): 2}
    assert (0, 1) in pending_cells(cube_path, failed=True)
    assert (0, 1) not in pending_cells(cube_path)


def test_write_cell_refuses_malformed_results(cube_path: Path, spec: SweepSpec) -> None:
    def attempt(th: list[Any], mc: list[Any], error: type[Exception], match: str) -> None:
        with pytest.raises(error, match=match):
            write_cell(cube_path, spec, 0, 2, th, mc)

    th, mc = fake_cell(spec, 0, 2)
    short = fake_montecarlo(parse_sweep(SMALL.replace("p: 20", "p: 19")), 0, 0, 2, 0)
    attempt(
        th,
        [[short, mc[0][1]], mc[1]],
        ValueError,
        r"montecarlo\[0\]\[0\].eigenvalues: expected shape \(20,\)",
    )
    coarse = fake_theory(parse_sweep(SMALL.replace("points: 64", "points: 32")), 0, 0, 2)
    attempt([coarse, th[1]], mc, ValueError, r"theory\[0\].x: expected shape \(64,\)")
    few_k = fake_montecarlo(parse_sweep(SMALL + "montecarlo: {k: 1}\n"), 0, 0, 2, 0)
    attempt(th, [[few_k, mc[0][1]], mc[1]], ValueError, r"align_bottom\['mu'\]: expected shape \(2,\)")
    attempt(th[:1], mc, ValueError, "expected 2 results")
    attempt(th, mc[:1], ValueError, "expected 2 entries")
    attempt(th, [mc[0][:1], mc[1]], ValueError, r"montecarlo\[0\]: expected 2 results")
    attempt([mc[0][0], th[1]], mc, TypeError, "expected a TheoryResult")
    attempt(th, [[th[0], th[1]], mc[1]], TypeError, "expected a MonteCarloResult")
    many = fake_theory(spec, 0, 0, 2)
    object.__setattr__(many, "spikes", np.arange(4.0))
    attempt([many, th[1]], mc, ValueError, "at most 3 spikes")
    with pytest.raises(IndexError):
        write_cell(cube_path, spec, 2, 0, th, mc)
    # Nothing was written.
    assert (open_cube(cube_path)["status"].values == STATUS_PENDING).all()
    assert pending_cells(cube_path) == all_cells(spec)


def test_check_store_accepts_the_same_sweep_and_names_differences(cube_path: Path, spec: SweepSpec) -> None:
    check_store(cube_path, spec)
    check_store(
        cube_path, parse_sweep(SMALL.replace("fixed: {mu: {angle: 90}}", "fixed:\n  mu: {angle: 90.0}"))
    )
    with pytest.raises(StoreError, match=r"different sweep \(store != sweep\): p: 20 != 40$") as caught:
        check_store(cube_path, parse_sweep(SMALL.replace("p: 20", "p: 40")))
    assert isinstance(caught.value, HessweepError) and caught.value.path == str(cube_path)
    with pytest.raises(StoreError, match=r"seed: 5 != 6; grid.c: \[0.5, 2.0\] != \[0.5, 1.0\]"):
        check_store(cube_path, parse_sweep(SMALL.replace("seed: 5", "seed: 6").replace("2.0]", "1.0]")))
    with pytest.raises(StoreError, match=r"grid\.loss"):
        check_store(cube_path, parse_sweep(SMALL.replace("logistic, exponential", "exponential, logistic")))
    with pytest.raises(StoreError, match="no such store"):
        check_store(cube_path.parent / "missing.zarr", spec)
    other = cube_path.parent / "other.zarr"
    xr.Dataset({"a": ("d", np.zeros(2))}).to_zarr(other, zarr_format=3, consolidated=False)
    with pytest.raises(StoreError, match="not a hessweep cube"):
        check_store(other, spec)
    with pytest.raises(StoreError, match="no such store"):
        open_cube(cube_path.parent / "missing.zarr")
    attrs = zarr.open_group(cube_path, mode="r").attrs
    assert (attrs["cube_format"], attrs["montecarlo_method"]) == (CUBE_FORMAT, "dense")
    # A format-2 cube is a dense format-3 cube: read and resumed.
    zarr.open_group(cube_path, mode="r+").attrs["cube_format"] = 2
    check_store(cube_path, spec)
    # A cube of an older layout (format 1 had no bulk_count) is refused, not half-resumed.
    zarr.open_group(cube_path, mode="r+").attrs["cube_format"] = 1
    with pytest.raises(StoreError, match=r"a cube of format 1, .* into a new store"):
        check_store(cube_path, spec)


def test_open_cube_is_labelled(cube_path: Path, spec: SweepSpec) -> None:
    write_cell(cube_path, spec, 0, 2, *fake_cell(spec, 0, 2))
    assert pipeline.open_cube is open_cube
    cube = open_cube(cube_path)
    assert all(isinstance(label, str) for label in cube["loss"].values.tolist())
    point = cube.sel(c=0.5, loss="logistic")
    assert dict(point["spike"].sizes) == {"signal": 3, "spike_index": 3}
    assert point["done"].sel(signal=2.5).values.all()
    assert not point["done"].sel(signal=0.0).values.any()
    assert point["edge_left"].sel(signal=2.5).values == -1.0
    assert cube.sel(c=0.5, loss="exponential", signal=2.5)["edge_left"].values == -np.inf


# The paper's figure 2c/2d: C = diag(1, t) in halves, one bulk at t = 1, two at t = 4.
TWO_BLOCKS = """
name: blocks
p: 20
grid: {c: [0.125], loss: [logistic], signal: [1.0, 4.0]}
signal: cov.eigenvalues[1]
fixed:
  w_star: {norm: 0}
  mu: {norm: 1, angle: 90, spread: true}
  w: {norm: 1, angle: 90, spread: true}
  cov: {eigenvalues: [1, null], weights: [0.5, 0.5]}
theory: {points: 64}
"""


def test_bulk_count_round_trips(tmp_path: Path) -> None:
    spec = parse_sweep(TWO_BLOCKS)
    path = tmp_path / "blocks.zarr"
    create_store(path, spec)
    solved = [theory.solve(spec.scenario(0, 0, i), points=spec.theory.points) for i in range(2)]
    assert [len(result.edges) for result in solved] == [1, 2]
    for i_signal, result in enumerate(solved):
        write_cell(path, spec, 0, i_signal, [result], [[fake_montecarlo(spec, 0, 0, i_signal, 0)]])
    cube = open_cube(path)
    assert cube["bulk_count"].sel(c=0.125, loss="logistic").values.tolist() == [1, 2]
    # A theory that failed leaves the count at its fill value, 0: no point has zero bulks.
    write_cell(
        path, spec, 0, 1, [CellFailure("RuntimeError: no edge")], [[fake_montecarlo(spec, 0, 0, 1, 0)]]
    )
    assert open_cube(path)["bulk_count"].values.ravel().tolist() == [1, 0]


def test_no_extreme_eigenvectors(tmp_path: Path) -> None:
    spec = parse_sweep(SMALL + "montecarlo: {k: 0}\n")
    path = tmp_path / "k0.zarr"
    create_store(path, spec)
    write_cell(path, spec, 1, 0, *fake_cell(spec, 1, 0))
    cube = open_cube(path)
    assert cube.sizes["k"] == 0
    assert cube["done"].isel(c=1, signal=0).values.all()
    assert pending_cells(path) == [cell for cell in all_cells(spec) if cell != (1, 0)]


VERIFIED = """
name: verified
p: 30
trials: 2
model: logistic
grid: {c: [0.5, 2.0], loss: [logistic, square], signal: [0.0, 1.0]}
fixed: {w_star: {norm: 1.0}, w: w_star}
theory: {points: 40}
"""


def test_verify_passes_complete_cubes_and_names_every_broken_point(
    cube_from_yaml, lanczos_cube: Path, tmp_path: Path
) -> None:
    from pipeline import cli
    from pipeline.store import verify

    dense = tmp_path / "dense.zarr"
    shutil.copytree(cube_from_yaml(VERIFIED), dense)
    assert verify(dense) == (2 * 2 * 2 * 2, [])
    assert verify(lanczos_cube) == (2 * 2 * 2 * 2, [])
    assert cli.main(["verify", str(dense)]) == 0

    group = zarr.open_group(dense, mode="r+")
    eigenvalues = group["eigenvalues"]
    row = eigenvalues[0, 1, 1, 0]
    eigenvalues[0, 1, 1, 0] = row[::-1]  # c[0], loss square, signal[1], trial 0
    group["density"][1, 0, 0, 3] = np.nan  # both trials of c[1], logistic, signal[0]
    group["done"][1, 1, 1, 1] = False  # status still says done
    group["status"][0, 0, 0, 1] = STATUS_FAILED  # failed, no message, and still marked done
    group["converged"][1, 1, 0] = False  # both trials of c[1], square, signal[0]
    checked, problems = verify(dense)
    assert checked == 15
    assert problems == [
        "c[0] = 0.5, loss = logistic, signal[0] = 0, trial 1: done, but its status is not done",
        "c[1] = 2, loss = square, signal[1] = 1, trial 1: status done, but not marked done",
        "c[0] = 0.5, loss = logistic, signal[0] = 0, trial 1: failed without an error message",
        "c[0] = 0.5, loss = square, signal[1] = 1, trial 0: eigenvalues not ascending",
        "c[1] = 2, loss = square, signal[0] = 0, trial 0: done, but its theory did not converge",
        "c[1] = 2, loss = square, signal[0] = 0, trial 1: done, but its theory did not converge",
        "c[1] = 2, loss = logistic, signal[0] = 0, trial 0: theory density missing, not finite or negative",
        "c[1] = 2, loss = logistic, signal[0] = 0, trial 1: theory density missing, not finite or negative",
    ]
    assert cli.main(["verify", str(dense), "--max", "2"]) == 1
    assert cli.main(["verify", str(tmp_path / "absent.zarr")]) == 2

    lanczos = tmp_path / "lanczos.zarr"
    shutil.copytree(lanczos_cube, lanczos)
    group = zarr.open_group(lanczos, mode="r+")
    group["mc_weights"][0, 0, 0, 0, 5] = -0.1
    group["mc_nodes"][1, 1, 1, 1, 3] = np.nan
    assert [line.split(": ", 1)[1] for line in verify(lanczos)[1]] == [
        "quadrature nodes not finite, or NaN before the last node",
        "quadrature weights negative or missing",
        "quadrature weights do not sum to 1",
        "quadrature weights do not sum to 1",
    ]


HOLD_LOCK = """
import sys, time
from pipeline.store import lock
with lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def hold_lock_in_child(path: Path) -> subprocess.Popen[str]:
    """A child process that takes the store's lock and sleeps (until killed)."""
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def kill(child: subprocess.Popen[str]) -> None:
    """SIGKILL the child, reap it and close its pipe."""
    child.kill()
    child.wait()
    assert child.stdout is not None
    child.stdout.close()


def test_lock_refuses_a_second_run_and_names_the_first(tmp_path: Path) -> None:
    from pipeline.store import lock

    path = tmp_path / "cube.zarr"
    with lock(path) as held:
        assert held == f"{path}.lock"
        owner = json.loads(Path(held).read_text())
        assert owner["pid"] == os.getpid()
        with pytest.raises(
            StoreError, match=rf"in use by another hessweep run \(host .*, pid {os.getpid()}, since "
        ):
            with lock(path):
                pass
    assert not Path(f"{path}.lock").exists()
    with lock(path):  # free again
        pass


def test_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    from pipeline.store import lock

    path = tmp_path / "cube.zarr"
    child = hold_lock_in_child(path)
    try:
        with pytest.raises(StoreError, match=f"pid {child.pid}"):
            with lock(path):
                pass
    finally:
        kill(child)  # SIGKILL: no cleanup, the lock file stays behind
    assert json.loads(Path(f"{path}.lock").read_text())["pid"] == child.pid
    with lock(path) as held:
        assert json.loads(Path(held).read_text())["pid"] == os.getpid()


def test_run_on_a_locked_store_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    from pipeline import cli

    sweep = tmp_path / "tiny.yaml"
    sweep.write_text("name: tiny\np: 20\ngrid: {c: [0.5], loss: [square], signal: [1.0]}\nmodel: linear\n")
    path = tmp_path / "tiny.zarr"
    child = hold_lock_in_child(path)
    try:
        assert cli.main(["run", str(sweep), "--store", str(path), "--workers", "1", "--no-progress"]) == 2
    finally:
        kill(child)
    assert not path.exists()
