"""Tests of pipeline.relu.analysis and pipeline.relu.figures: Arjevani & Field's claims measured on
direct points and on a small relu cube, the spectra figure, and the notebook that puts them together."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_notebooks import execute, images, stdout
from threadpoolctl import threadpool_limits

from pipeline import open_cube
from pipeline.cli import main
from pipeline.plots import PlotError, save
from pipeline.relu import (
    analysis,
    classify,
    figures,
    find_critical_point,
    fixed_space,
    flip_start,
    global_minimum_spectrum,
    hessian,
    standard_teacher,
)
from pipeline.relu.analysis import (
    bounded_approach,
    distinct_eigenvalues,
    eigenvalue_counts,
    global_minimum_gap,
    growth_fit,
    multiplicities,
    representatives,
    spectra_by_k,
    type_a_multiplicities,
)

GAMMA = 1.0 / (2.0 * math.pi)
# Direct type-A points (fixed-space search from "flip the last neuron"; 0.5 s for all of them).
DIRECT_KS = tuple(range(6, 21))
# The cube of the notebook test and of the cube tests: k <= 10, both starts, two trials.
SMALL = """
family: relu
name: relu_small
trials: 2
seed: 0
grid: {k: [6, 7, 8, 9, 10], start: [random, flip1]}
perturbation: 1.0e-3
"""
SMALL_KS = (6, 7, 8, 9, 10)
TYPE_A = "S_{k-1} x S_1"


@pytest.fixture(scope="module")
def type_a() -> xr.Dataset:
    """The type-A spectra at DIRECT_KS, computed directly (BLAS on one thread: the machine is shared)."""
    spectra = {}
    with threadpool_limits(1):
        for k in DIRECT_KS:
            V = standard_teacher(k)
            point = find_critical_point(flip_start([k - 1, 1]), V, fixed_space=fixed_space([k - 1, 1]))
            assert point.converged
            spectra[k] = np.linalg.eigvalsh(hessian(point.W, V))
    return spectra_by_k(spectra)


@pytest.fixture(scope="module")
def small_cube(cube_from_yaml: Callable[[str], Path]) -> Path:
    with threadpool_limits(1):
        return cube_from_yaml(SMALL)


# --- plain spectra ---------------------------------------------------------------------------------


def test_distinct_eigenvalues_split_at_the_tolerance() -> None:
    values, counts = distinct_eigenvalues([2.0, 1.0, 1.0 + 1e-10, 1.0 + 1e-7])
    # 1e-10 < CLUSTER_RTOL × max|λ| = 2e-9 < 1e-7: the first pair merges, the third value stays apart.
    assert counts.tolist() == [2, 1, 1] and values[0] == pytest.approx(1.0 + 5e-11, abs=1e-15)
    assert distinct_eigenvalues([1.0, 1.0 + 1e-5], rtol=1e-4)[1].tolist() == [2]
    with pytest.raises(ValueError, match=r"^values:"):
        distinct_eigenvalues([1.0, np.nan])
    with pytest.raises(ValueError, match=r"^rtol:"):
        distinct_eigenvalues([1.0], rtol=-1.0)


def test_type_a_multiplicities_fill_the_space() -> None:
    for k in range(4, 21):
        pattern = type_a_multiplicities(k)
        assert sum(pattern) == k * k
        assert len(pattern) == (11 if k == 4 else 12)
    with pytest.raises(ValueError, match=r"^k:"):
        type_a_multiplicities(3)


def test_spectra_by_k_checks_its_input() -> None:
    with pytest.raises(ValueError, match=r"^spectra\[4\]: must hold the k·d = 20"):
        spectra_by_k({4: np.ones(16)}, extra=1)
    with pytest.raises(ValueError, match=r"^spectra\[2\]: has values that are not finite"):
        spectra_by_k({2: [1.0, 2.0, 3.0, np.nan]})
    with pytest.raises(ValueError, match=r"^extra:"):
        spectra_by_k({2: np.ones(4)}, extra=-1)


# --- claims (a) and (b) on direct points ----------------------------------------------------------


def test_counts_bounded_and_growing(type_a: xr.Dataset) -> None:
    counts = eigenvalue_counts(type_a)
    assert counts["matches"].all()
    assert counts["above"].values.tolist() == [k + 1 for k in DIRECT_KS]
    # The threshold sits in a real gap: measured 0.40 below it at most, 0.87 above it at least.
    assert float(counts["largest_below"].max()) < 0.45 < 0.8 < float(counts["smallest_above"].min())
    # Inside the bounded cluster the counts are wrong: the check can fail.
    assert not eigenvalue_counts(type_a, threshold=0.3)["matches"].any()
    # d > k: the global minimum has d + 1 growing eigenvalues, (k + 1)/4 among them (d − k-fold).
    wide = spectra_by_k({k: global_minimum_spectrum(k, k + 3) for k in (4, 6, 9)}, extra=3)
    wide_counts = eigenvalue_counts(wide)
    assert wide_counts["matches"].all()
    assert wide_counts["above"].values.tolist() == [8, 10, 13]


def test_growth_slopes(type_a: xr.Dataset) -> None:
    fit = growth_fit(type_a)
    # One simple branch with slope 1/2π, a (k − 2)-fold one and two simple ones with slope 1/4.
    assert fit["reference_name"].values.tolist() == ["1/(2π)", "1/4", "1/4", "1/4"]
    assert fit["multiplicity"].sel(k=14).values.tolist() == [1, 1, 12, 1]
    # Finite-k curvature: measured |slope − reference| ≤ 0.0111 over 6 ≤ k ≤ 20, and ≤ 0.0021 once
    # terms in 1/k and 1/k² take it up.
    assert np.abs(fit["deviation"].values).max() < 0.015
    assert np.all(fit["slope_stderr"].values < 0.002)
    corrected = growth_fit(type_a, inverse_powers=2)
    assert np.abs(corrected["deviation"].values).max() < 0.003
    assert np.all(np.abs(corrected["deviation"].values) < np.abs(fit["deviation"].values))
    # A spectrum whose growing part grows twice as fast is flagged: 2/(2π) ≈ 0.32 is nearest 1/4,
    # 0.05 off it (measured), the others 0.25 off; all beyond the 0.015 above.
    doubled = type_a.copy()
    doubled["eigenvalues"] = xr.where(
        type_a["eigenvalues"] > 0.5, 2.0 * type_a["eigenvalues"], type_a["eigenvalues"]
    )
    assert np.abs(growth_fit(doubled)["deviation"].values).min() > 0.04
    with pytest.raises(ValueError, match=r"^spectra: need at least 2"):
        growth_fit(type_a.isel(k=[0]))


def test_growth_needs_the_same_branches_at_every_k() -> None:
    # Branches are followed by rank: one more distinct growing eigenvalue at one k breaks that.
    spectra = spectra_by_k({k: global_minimum_spectrum(k) for k in (4, 5)})
    shifted = spectra.copy()
    values = shifted["eigenvalues"].values.copy()
    values[1, 0] = 10.0  # one more distinct growing eigenvalue at k = 5
    shifted["eigenvalues"] = (("k", "eig"), np.sort(values, axis=1))
    with pytest.raises(ValueError, match="different numbers of distinct eigenvalues"):
        growth_fit(shifted)


def test_bounded_approach(type_a: xr.Dataset) -> None:
    approach = bounded_approach(type_a)
    # Every bounded eigenvalue within 0.1 of a constant (at most 0.086, at k = 6), none near 0.
    assert float(approach["max_distance"].max()) < 0.1 and float(approach["smallest"].min()) > 1e-3
    # At least as fast as k^(-1/2): measured RMS exponent −0.92 ± 0.003, largest distance −0.72 ± 0.007.
    assert float(approach["rms_exponent"]) < -0.8
    assert float(approach["max_exponent"]) < -0.6
    assert approach["near"].sum("constant").values.tolist() == [k * k - k - 1 for k in DIRECT_KS]
    # Bounded eigenvalues held 0.05 above their constant at every k do not approach it: exponent 0.
    constants = np.array(analysis.CONSTANTS)
    stuck = {}
    for k, values in _rows(type_a):
        nearest = constants[np.abs(values[:, None] - constants[None, :]).argmin(axis=1)]
        stuck[k] = np.where(values < analysis.THRESHOLD, nearest + 0.05, values)
    assert abs(float(bounded_approach(spectra_by_k(stuck))["max_exponent"])) < 1e-6


def test_spurious_and_global_spectra_come_together(type_a: xr.Dataset) -> None:
    gap = global_minimum_gap(type_a)
    assert np.all(np.diff(gap["mean_gap"].values) < 0)
    assert float(gap["mean_exponent"]) < analysis.APPROACH_EXPONENT  # measured −0.95


def test_multiplicities(type_a: xr.Dataset) -> None:
    found = multiplicities(type_a, against=TYPE_A)
    assert found["matches"].all() and (found["distinct"] == 12).all()
    assert found["pattern"].sel(k=6).item() == "5×1, 5×4, 1×5, 1×6"
    # The type-A spectrum is not the global minimum's.
    assert not multiplicities(type_a, against="global minimum")["matches"].any()
    # The numerical Hessian at W = V against the closed form, value by value (eigvalsh: ≤ kd·ε·‖H‖).
    numeric = spectra_by_k({k: np.linalg.eigvalsh(hessian(np.eye(k), np.eye(k))) for k in (4, 7, 12)})
    exact = multiplicities(numeric, against="global minimum")
    assert exact["matches"].all() and float(exact["value_error"].max()) < 1e-12
    # A symmetry-breaking perturbation splits the multiplets.
    rng = np.random.default_rng(np.random.SeedSequence(31))
    W = np.eye(7) + 1e-3 * rng.standard_normal((7, 7))
    broken = spectra_by_k({7: classify(W, np.eye(7)).eigenvalues})
    assert not multiplicities(broken, against="global minimum")["matches"].any()
    with pytest.raises(ValueError, match=r"^against: must be one of"):
        multiplicities(type_a, against="S_k")
    with pytest.raises(
        ValueError, match="^" + re.escape("against: the S_{k-1} x S_1 pattern is known for d = k")
    ):
        multiplicities(spectra_by_k({4: global_minimum_spectrum(4, 5)}, extra=1), against=TYPE_A)


def _rows(spectra: xr.Dataset) -> list[tuple[int, np.ndarray]]:
    out = []
    for k in spectra["k"].values:
        row = spectra["eigenvalues"].sel(k=k).values
        out.append((int(k), row[np.isfinite(row)]))
    return out


# --- a cube ------------------------------------------------------------------------------------------


def test_representatives_follow_the_rule(small_cube: Path, type_a: xr.Dataset) -> None:
    cube = open_cube(small_cube).load()
    picked = representatives(cube, start="flip1", kind="spurious minimum", isotropy=TYPE_A)
    assert picked["k"].values.tolist() == list(SMALL_KS)
    at = cube.sel(start="flip1", extra=0)
    for k in SMALL_KS:
        matching = [t for t in range(2) if at["kind"].sel(k=k).values[t] == "spurious minimum"]
        losses = at["loss"].sel(k=k).values
        assert int(picked["matches"].sel(k=k)) == len(matching) == 2
        assert int(picked["trial"].sel(k=k)) == min(matching, key=lambda t: (losses[t], t))
        trial = int(picked["trial"].sel(k=k))
        assert np.array_equal(
            picked["eigenvalues"].sel(k=k).values[: k * k], at["eigenvalues"].sel(k=k).values[trial, : k * k]
        )
    # The cube's points are conjugates of the direct fixed-space ones: the same spectra, to the
    # points' own errors (gradient ≤ 1e-12, so eigenvalues ≲ 1e-9 apart).
    for k in (6, 8, 10):
        direct = type_a["eigenvalues"].sel(k=k).values[: k * k]
        np.testing.assert_allclose(picked["eigenvalues"].sel(k=k).values[: k * k], direct, rtol=0, atol=1e-8)
    assert multiplicities(picked, against=TYPE_A)["matches"].all()
    assert eigenvalue_counts(picked)["matches"].all()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"start": "flip9"}, "start"),
        ({"extra": 2}, "extra"),
        ({"kind": "maximum"}, "kind"),
        ({"kind": "saddle"}, "kind"),  # no saddle in the cube
    ],
)
def test_representatives_name_a_bad_selection(
    small_cube: Path, options: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        representatives(open_cube(small_cube), **options)  # type: ignore[arg-type]


# --- the figure --------------------------------------------------------------------------------------


def test_spectra_figure(small_cube: Path, tmp_path: Path) -> None:
    cube = open_cube(small_cube)
    figure = figures.spectra(cube, isotropy=TYPE_A)
    ax = figure.axes[0]
    gids = [artist.get_gid() for artist in ax.get_children() if artist.get_gid()]
    assert gids.count("eigenvalues") == 1 and gids.count("global-minimum") == 1
    assert sorted(g for g in gids if g.startswith("growth-fit")) == [f"growth-fit-{i}" for i in range(4)]
    assert {f"constant-{i}" for i in range(3)} | {"threshold"} <= set(gids)
    assert ax.get_yscale() == "log"
    # 12 distinct eigenvalues per k drawn for the type-A points.
    points = next(a for a in ax.collections if a.get_gid() == "eigenvalues")
    assert len(points.get_offsets()) == 12 * len(SMALL_KS)
    path = tmp_path / "spectra.png"
    save(figure, path)
    assert path.stat().st_size > 10_000
    alone = figures.spectra(cube, global_minimum=False)
    assert "global-minimum" not in [a.get_gid() for a in alone.axes[0].get_children()]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"start": "flip3"}, "start"),
        ({"extra": 1}, "extra"),
        ({"kind": "minimum"}, "kind"),
        ({"isotropy": "S_{k-2} x S_2"}, "isotropy"),
    ],
)
def test_spectra_figure_names_a_bad_option(small_cube: Path, options: dict[str, object], field: str) -> None:
    with pytest.raises(PlotError, match=f"^{field}: "):
        figures.spectra(open_cube(small_cube), **options)  # type: ignore[arg-type]


def test_plot_command_draws_the_spectra(
    small_cube: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "spectra.png"
    assert main(["plot", str(small_cube), "spectra", "--sel", "start=flip1", "extra=0", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and captured.err == ""
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000
    assert main(["plot", str(small_cube), "spectra", "--sel", "start=flip9", "-o", str(out)]) == 2
    assert capsys.readouterr().err.startswith("hessweep: --sel start=flip9: not a value of start")


# --- the notebook ------------------------------------------------------------------------------------


def test_notebook_measures_the_claims(
    small_cube: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    # The notebook looks for RESULTS/<name>.zarr: the complete cube, so no cluster starts.
    (results / small_cube.name).symlink_to(small_cube, target_is_directory=True)
    sweep = tmp_path / "small.yaml"
    sweep.write_text(SMALL, encoding="utf-8")
    env = {"HESSWEEP_SWEEP": str(sweep), "HESSWEEP_RESULTS": str(results), "OMP_NUM_THREADS": "1"}
    notebook = execute("arjevani_field", env, monkeypatch)
    assert "0 cells computed, 10 already done, 0 points failed" in stdout(notebook, "run")
    counts = stdout(notebook, "counts")
    assert "k = 10: 89 eigenvalues below 0.5 (dk − d − 1 = 89), 11 above (d + 1 = 11)" in counts
    multiplets = stdout(notebook, "multiplicities")
    assert "k = 10: 12 distinct eigenvalues, multiplicities 5×1, 5×8, 1×27, 1×28 as predicted" in multiplets
    growth = stdout(notebook, "growth")
    assert "slopes of 1/(2π): 1, of 1/4: 3" in growth
    assert growth.count("with 1/k terms") == 4
    assert "global minimum = closed form" in stdout(notebook, "global-minimum")
    # The approach to the constants (log-log) and the spectra.
    assert images(notebook) == 2
