"""The Pennington–Bahri analysis, figures and notebook (``pipeline.pb.analysis``, ``pipeline.pb.figures``).

The analysis is checked on the theory (the small-index exponent is 3/2), on a synthetic network cube
whose every number is known (exact power laws, minimisers of chosen energies, runs that must be left
out), on noisy synthetic runs (the bootstrap's spread against the spread between independent
surveys) and on real runs of the tanh network; the figures are drawn (Agg) from those cubes and
from a small ``pb`` cube; the notebook runs on small sweeps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure
from test_notebooks import execute, images, stdout

from pipeline.cli import main
from pipeline.errors import ScenarioError
from pipeline.pb import MODELS, critical_energy, figures, solve
from pipeline.pb.analysis import (
    PAPER_CRITICAL_ENERGY,
    POWER_LAW_RANGE,
    fit_theory_exponent,
    index_curve,
    network_summary,
    pooled_exponent,
    window_exponent,
)
from pipeline.pbnet import fit_index_law
from pipeline.plots import PlotError, save
from pipeline.store import open_cube

# ----------------------------------------------------------------------------------------------
# 1. The theory
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("phi", [0.25, 2 / 3])
def test_theory_exponent_is_three_halves(model: str, phi: float) -> None:
    fit = fit_theory_exponent(phi, model)
    assert fit.distance == POWER_LAW_RANGE and fit.critical_energy == critical_energy(phi, model)
    # Over t in [1e-4, 1e-2] the local slope drifts 1.4999 -> 1.495: the fit is 1.498-1.499; 0.02 is
    # the tolerance issue 7 asks for.
    assert abs(fit.exponent - 1.5) < 0.02
    # The residuals are that drift, not noise (α is exact to 1e-10): the standard error is small
    # (measured 1-2e-4) but not 0.
    assert 0 < fit.exponent_stderr < 1e-3
    # α₀ is the law's prefactor: at t = 1e-3 the law and the theory agree to the drift of the
    # slope over the range (t^{±0.002} ~ 1 %).
    t = 1e-3
    alpha = solve(phi, fit.critical_energy * (1 + t), model).index
    assert fit.alpha0 * t**fit.exponent == pytest.approx(alpha, rel=0.02)


def test_theory_exponent_does_not_depend_on_sigma() -> None:
    # α depends on ε/σ² only and ε_c ∝ σ²: the same t give the same α, up to the solver's rounding
    # (relative 1e-9 of α leaves the slope equal to 1e-8).
    unit, scaled = fit_theory_exponent(0.5, "product"), fit_theory_exponent(0.5, "product", sigma=3.0)
    assert scaled.critical_energy == pytest.approx(9.0 * unit.critical_energy, rel=1e-14)
    assert scaled.exponent == pytest.approx(unit.exponent, rel=1e-8)
    assert scaled.alpha0 == pytest.approx(unit.alpha0, rel=1e-8)


def test_theory_exponent_is_smaller_further_out() -> None:
    # The point of the range: the log-slope falls away from ε_c, so a range ending at 1e-2 gives a
    # smaller exponent than one ending at 1e-3 (measured 1.4985 against 1.4998): the fit sees it.
    near = fit_theory_exponent(0.5, distance=(1e-5, 1e-3))
    far = fit_theory_exponent(0.5, distance=(1e-3, 1e-2))
    assert far.exponent < near.exponent - 1e-3


def test_index_curve_leaves_zero_at_the_critical_energy() -> None:
    epsilon_c = critical_energy(0.25, sigma=0.5)
    eps = epsilon_c * np.array([[0.0, 0.5, 1 - 1e-6], [1 + 1e-6, 2.0, 4.0]])
    alpha = index_curve(0.25, eps, sigma=0.5)
    assert alpha.shape == (2, 3)
    assert np.all(alpha[0] == 0.0) and np.all(alpha[1] > 0) and np.all(np.diff(alpha[1]) > 0)


def test_window_exponent_is_three_halves_only_in_a_tiny_window() -> None:
    # On the theory's own curve, a free fit over 0 < α ≤ 1e-5 (t ≲ 3e-3 at φ = 1/4) finds the law's
    # 3/2 (measured 1.498); over α ≤ 1e-3 (t ≲ 0.06) already 1.46, and over the network fits' α ≤ 0.1
    # (t up to 2.6) 0.83: the curve bends over.  The window is what a fit of the runs can see.
    tiny, small, wide = (window_exponent(0.25, alpha_max=a) for a in (1e-5, 1e-3, 0.1))
    assert abs(tiny - 1.5) < 0.02
    assert wide < small < tiny and wide < 1.0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: fit_theory_exponent(1.0), "phi"),
        (lambda: fit_theory_exponent(0.5, "goe"), "model"),
        (lambda: fit_theory_exponent(0.5, distance=(1e-3, 1e-1)), "distance"),
        (lambda: fit_theory_exponent(0.5, distance=(1e-2, 1e-3)), "distance"),
        (lambda: fit_theory_exponent(0.5, points=2), "points"),
        (lambda: index_curve(0.5, [-1.0]), "eps"),
        (lambda: window_exponent(1.5), "phi"),
        (lambda: window_exponent(0.5, alpha_max=0.0), "alpha_max"),
    ],
)
def test_theory_bad_arguments_name_the_argument(call: Callable[[], object], field: str) -> None:
    with pytest.raises(ScenarioError) as error:
        call()
    assert error.value.field == field


# ----------------------------------------------------------------------------------------------
# 2. The summary of a network experiment
# ----------------------------------------------------------------------------------------------

TRIALS = 12
# φ = 1/4: the law α = 2(ε − 0.3)^{3/2} exactly for five runs in (0, 0.1] and one beyond it; three
# minimisers; a run beyond alpha_max off the law; one unconverged run and one not done, both of
# which would wreck the numbers if read.
LAW = np.array([1, 2, 4, 8, 12]) / 128
QUARTER = [
    *[(0.3 + (a / 2.0) ** (2 / 3), a, True, True) for a in LAW],
    (0.3 + (0.125 / 2.0) ** (2 / 3), 0.125, True, True),
    (0.2, 0.0, True, True),
    (0.24, 0.0, True, True),
    (0.28, 0.0, True, True),
    (0.9, 0.3, True, True),
    (5.0, 0.05, False, True),
    (0.0, 0.0, True, False),
]
# The kept runs' σ (median 0.5); the others' would move it.
QUARTER_SIGMA = [0.4, 0.45, 0.5, 0.5, 0.5, 0.55, 0.6, 0.5, 0.5, 0.7, 100.0, 100.0]
# φ = 1/2: two runs on α = (ε − 0.1)^{3/2}, the other trials not done.
HALF = [(0.1 + a ** (2 / 3), a, True, True) for a in (1 / 128, 3 / 128)] + [(0.0, 0.0, False, False)] * 10


def synthetic_cube() -> xr.Dataset:
    """A pbnet cube's variables that the analysis reads, with the runs above."""
    rows = [QUARTER, HALF]
    columns = {
        name: np.array([[run[k] for run in row] for row in rows])
        for k, name in enumerate(("energy", "index", "converged", "done"))
    }
    columns["gauss_newton_mean"] = np.array([QUARTER_SIGMA, [0.3] * TRIALS])
    return xr.Dataset(
        {name: (("phi", "trial"), values) for name, values in columns.items()},
        coords={"phi": [0.25, 0.5], "trial": np.arange(TRIALS)},
    )


@pytest.fixture(scope="module")
def synthetic_summary() -> xr.Dataset:
    return network_summary(synthetic_cube(), bootstrap=50, seed=3)


def test_summary_counts_and_minimisers(synthetic_summary: xr.Dataset) -> None:
    quarter, half = synthetic_summary.sel(phi=0.25), synthetic_summary.sel(phi=0.5)
    assert (int(quarter["runs"]), int(quarter["kept"]), int(quarter["minimisers"])) == (11, 10, 3)
    assert (int(half["runs"]), int(half["kept"]), int(half["minimisers"])) == (2, 2, 0)
    assert float(quarter["minimiser_energy"]) == pytest.approx(0.24, rel=1e-14)
    # The standard deviation of (0.2, 0.24, 0.28) is 0.04: the standard error 0.04/√3.
    assert float(quarter["minimiser_energy_se"]) == pytest.approx(0.04 / math.sqrt(3), rel=1e-12)
    assert float(quarter["minimiser_energy_law"]) == 0.5 * 0.75**2
    assert np.isnan(float(half["minimiser_energy"])) and np.isnan(float(half["minimiser_energy_se"]))


def test_summary_fits_the_law_on_the_kept_runs(synthetic_summary: xr.Dataset) -> None:
    quarter, half = synthetic_summary.sel(phi=0.25), synthetic_summary.sel(phi=0.5)
    # Exact data: the intercept and prefactor to rounding of the least squares (1e-12).
    assert float(quarter["critical_energy"]) == pytest.approx(0.3, abs=1e-12)
    assert float(quarter["critical_energy_stderr"]) < 1e-12
    assert float(quarter["alpha0"]) == pytest.approx(2.0, rel=1e-10)
    assert int(quarter["fit_points"]) == LAW.size and str(quarter["fit_note"].values) == ""
    # The free exponent: the profile search stops at |Δq| ≤ 1e-6, |Δp| = p²|Δq| ≈ 2.3e-6.
    assert float(quarter["exponent"]) == pytest.approx(1.5, abs=1e-5)
    assert float(quarter["critical_energy_free"]) == pytest.approx(0.3, abs=1e-5)
    # Every resample of exact data that can be fitted gives 3/2 again; those with fewer than three
    # distinct indices in range are skipped (a resample of 12 runs misses most of the five often).
    assert 0 < int(quarter["exponent_bootstraps"]) <= 50
    assert float(quarter["exponent_stderr"]) < 1e-5
    assert float(quarter["exponent_low"]) <= 1.5 + 1e-5 and float(quarter["exponent_high"]) >= 1.5 - 1e-5
    # Two runs: the line through them, with no standard error and no free exponent.
    assert float(half["critical_energy"]) == pytest.approx(0.1, abs=1e-12)
    assert np.isnan(float(half["critical_energy_stderr"])) and np.isnan(float(half["exponent"]))
    assert "p free" in str(half["fit_note"].values) and int(half["exponent_bootstraps"]) == 0
    assert "p = 3/2: 2 runs in (0, 0.1]: a line through them, no error" in str(half["fit_note"].values)


def test_summary_theory_and_paper_columns(synthetic_summary: xr.Dataset) -> None:
    assert synthetic_summary["sigma"].values.tolist() == [0.5, 0.3]
    for phi, sigma in ((0.25, 0.5), (0.5, 0.3)):
        for model in MODELS:
            at = {"phi": phi, "model": model}
            assert float(synthetic_summary["theory_critical_energy"].sel(at)) == critical_energy(phi, model)
            expected = critical_energy(phi, model, sigma=sigma)
            assert float(synthetic_summary["theory_critical_energy_sigma"].sel(at)) == expected
        assert float(synthetic_summary["paper_critical_energy"].sel(phi=phi)) == PAPER_CRITICAL_ENERGY[phi]


def test_summary_is_keyed_by_its_seed() -> None:
    noisy = runs_cube(noisy_runs(np.random.default_rng(5), 60))
    first = network_summary(noisy, bootstrap=20, seed=1)
    assert first.identical(network_summary(noisy, bootstrap=20, seed=1))
    other = network_summary(noisy, bootstrap=20, seed=2)
    assert float(other["exponent_stderr"][0]) != float(first["exponent_stderr"][0])
    assert float(other["exponent"][0]) == float(first["exponent"][0])
    assert np.isnan(float(network_summary(noisy, bootstrap=0)["exponent_stderr"][0]))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"alpha_max": 0.0}, "alpha_max"), ({"alpha_max": 1.5}, "alpha_max"), ({"bootstrap": -1}, "bootstrap")],
)
def test_summary_bad_arguments_name_the_argument(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ScenarioError) as error:
        network_summary(synthetic_cube(), **kwargs)  # type: ignore[arg-type]
    assert error.value.field == field


def test_summary_refuses_another_cube() -> None:
    with pytest.raises(ScenarioError, match=r"^ds: is not a pbnet cube: it lacks gauss_newton_mean"):
        network_summary(synthetic_cube().drop_vars("gauss_newton_mean"))


def noisy_runs(
    rng: np.random.Generator, runs: int, *, exponent: float = 1.5, noise: float = 0.003
) -> tuple[np.ndarray, np.ndarray]:
    """Runs with α uniform on the multiples of 1/512 in (0, 0.1] (n = 16's indices) and energies
    ε = 0.2 + (α/3)^{1/p} + N(0, noise²)."""
    alpha = rng.integers(1, 52, runs) / 512
    return 0.2 + (alpha / 3.0) ** (1 / exponent) + rng.normal(0.0, noise, runs), alpha


def runs_cube(*groups: tuple[np.ndarray, np.ndarray]) -> xr.Dataset:
    """A pbnet cube's variables with one ratio per group of (energies, indices), every run kept."""
    runs = groups[0][0].size
    ones = np.ones((len(groups), runs))
    return xr.Dataset(
        {
            "energy": (("phi", "trial"), np.array([energy for energy, _ in groups])),
            "index": (("phi", "trial"), np.array([alpha for _, alpha in groups])),
            "converged": (("phi", "trial"), ones.astype(bool)),
            "done": (("phi", "trial"), ones.astype(bool)),
            "gauss_newton_mean": (("phi", "trial"), ones),
        },
        coords={"phi": [0.25, 0.5][: len(groups)], "trial": np.arange(runs)},
    )


def test_bootstrap_spread_is_the_spread_between_surveys() -> None:
    # What the bootstrap claims: the exponent's spread (half the central 68 % interval) over
    # independent surveys of the same size.  60 surveys of 60 runs give it to about 10 %; the
    # bootstrap of one survey estimates it with an error of its own and conservatively (measured
    # over 12 surveys: 0.9-2.5 times it, here 1.6): between half and three times it.
    rng = np.random.default_rng(11)
    exponents = [fit_index_law(*noisy_runs(rng, 60), exponent=None).exponent for _ in range(60)]
    low, high = np.percentile(exponents, [15.865, 84.135])
    stderr = float(network_summary(runs_cube(noisy_runs(rng, 60)), bootstrap=200)["exponent_stderr"][0])
    assert 0.5 < stderr / (0.5 * (high - low)) < 3.0


def test_pooled_exponent_of_exact_laws() -> None:
    # φ = 1/2 has two runs in range, too few to be pooled: φ = 1/4's exact law alone.
    exact = pooled_exponent(synthetic_cube(), bootstrap=0)
    assert exact.phis == (0.25,) and exact.points == LAW.size
    assert exact.exponent == pytest.approx(1.5, abs=1e-5) and math.isnan(exact.exponent_stderr)
    with pytest.raises(ScenarioError, match=r"^ds: no ratio"):
        pooled_exponent(synthetic_cube().isel(phi=[1]))


def test_an_exponent_at_the_end_of_the_search_is_flagged() -> None:
    # A step: flat energies up to α = 0.09, then a rise.  The closer α^q comes to a step the better
    # the line fits, so the search runs to q = 3 (p = 1/3): no exponent is determined, and the
    # summary and the pooled fit say so.  (The n = 16 runs do this at three of the six φ.)
    alpha = np.array([1, 2, 3, 5, 8, 13, 21, 34, 46, 51]) / 512
    energy = np.where(alpha < 0.09, 0.3, 0.4) + np.linspace(-1e-3, 1e-3, alpha.size)
    cube = runs_cube((energy, alpha))
    summary = network_summary(cube, bootstrap=10)
    assert float(summary["exponent"][0]) == pytest.approx(1 / 3, abs=1e-4)
    assert bool(summary["exponent_at_bound"][0]) and "end of the search" in str(summary["fit_note"].values[0])
    assert pooled_exponent(cube, bootstrap=0).at_bound
    # Exact 3/2 data are not flagged.
    assert not bool(network_summary(synthetic_cube(), bootstrap=0)["exponent_at_bound"][0])
    assert not pooled_exponent(synthetic_cube(), bootstrap=0).at_bound


def test_pooled_exponent_weighs_each_ratio_by_its_own_noise() -> None:
    # Two ratios of exponent 1.3, one scattered 25 times more than the other: each ratio's own
    # noise level is its weight, so the quiet one sets the exponent (measured: pooled 1.371, the
    # quiet ratio alone 1.372, the loud alone 0.41; one least-squares problem over both, 0.73).
    rng = np.random.default_rng(0)
    quiet = noisy_runs(rng, 80, exponent=1.3, noise=0.002)
    loud = noisy_runs(rng, 80, exponent=1.3, noise=0.05)
    pooled = pooled_exponent(runs_cube(quiet, loud), bootstrap=30, seed=4)
    assert pooled.phis == (0.25, 0.5) and pooled.points == 160 and pooled.bootstraps == 30
    # Within two of its bootstrap standard errors of the truth (measured 0.071 off, error 0.043).
    assert abs(pooled.exponent - 1.3) < 2 * pooled.exponent_stderr
    quiet_alone = fit_index_law(*quiet, exponent=None).exponent
    loud_alone = fit_index_law(*loud, exponent=None).exponent
    assert abs(pooled.exponent - quiet_alone) < 0.1 * abs(pooled.exponent - loud_alone)


# ----------------------------------------------------------------------------------------------
# 3. Real runs of the tanh network
# ----------------------------------------------------------------------------------------------

# A small network sweep: n = 4 (32 parameters, α in steps of 1/32), two ratios, 8 runs each (6 s).
NETWORK = """
family: pbnet
name: pbnet_small
n: 4
trials: 8
seed: 0
grid:
  phi: [0.25, 0.5]
"""
# The fits of so small a network need a wider range of α than n = 16's 0.1 for three distinct values.
SMALL_ALPHA_MAX = 0.3


@pytest.fixture(scope="module")
def network(cube_from_yaml: Callable[[str], Path]) -> xr.Dataset:
    return open_cube(cube_from_yaml(NETWORK)).load()


def test_summary_of_real_runs_is_fit_index_law_on_the_kept_runs(network: xr.Dataset) -> None:
    summary = network_summary(network, alpha_max=SMALL_ALPHA_MAX, bootstrap=10)
    for phi in network["phi"].values:
        runs = network.sel(phi=phi)
        kept = runs["done"].values & runs["converged"].values
        assert int(summary["runs"].sel(phi=phi)) == int(runs["done"].sum())
        assert int(summary["kept"].sel(phi=phi)) == int(kept.sum())
        energy, alpha = runs["energy"].values[kept], runs["index"].values[kept]
        assert int(summary["minimisers"].sel(phi=phi)) == int(np.count_nonzero(alpha == 0))
        fit = fit_index_law(energy, alpha, alpha_max=SMALL_ALPHA_MAX)
        assert float(summary["critical_energy"].sel(phi=phi)) == fit.critical_energy
        assert float(summary["sigma"].sel(phi=phi)) == np.median(runs["gauss_newton_mean"].values[kept])


# ----------------------------------------------------------------------------------------------
# 4. Figures
# ----------------------------------------------------------------------------------------------

PB = """
family: pb
name: pbfig
model: wigner
sigma: 1.0
N: 60
trials: 3
seed: 1
grid:
  phi: [0.5, 2.0]
  eps: [0.0, 0.02, 0.1]
theory: {points: 64}
"""


@pytest.fixture(scope="module")
def pb_cube(cube_from_yaml: Callable[[str], Path]) -> xr.Dataset:
    return open_cube(cube_from_yaml(PB)).load()


def gids(figure: Figure) -> set[str]:
    return {str(artist.get_gid()) for ax in figure.axes for artist in ax.get_children() if artist.get_gid()}


def test_index_energy_draws_runs_fits_and_theory(tmp_path: Path) -> None:
    figure = figures.index_energy(synthetic_cube())
    assert len([ax for ax in figure.axes if ax.axison]) == 2
    # φ = 1/4 has an unconverged run (hollow) and a fit; φ = 1/2 has its two-point fit too.
    assert {"kept", "unconverged", "fit", "critical-energy", "theory-wigner", "theory-product"} <= gids(
        figure
    )
    hollow = [line for line in figure.axes[0].get_lines() if line.get_gid() == "unconverged"]
    assert hollow[0].get_markerfacecolor() == "none" and np.asarray(hollow[0].get_xdata()).tolist() == [5.0]
    save(figure, tmp_path / "index_energy.png")
    assert (tmp_path / "index_energy.png").stat().st_size > 0


def test_critical_energy_draws_data_theory_and_minimisers() -> None:
    figure = figures.critical_energy(synthetic_cube())
    assert {"data", "theory-wigner", "theory-product", "theory-sigma", "paper"} <= gids(figure)
    assert {"minimisers", "minimiser-mean", "law"} <= gids(figure)
    dots = next(line for line in figure.axes[1].get_lines() if line.get_gid() == "minimisers")
    # The three kept minimisers of φ = 1/4; the not-done run at energy 0 is not one.
    assert sorted(np.asarray(dots.get_ydata()).tolist()) == [0.2, 0.24, 0.28]


def test_network_figures_draw_real_runs(network: xr.Dataset) -> None:
    assert "kept" in gids(figures.index_energy(network, alpha_max=SMALL_ALPHA_MAX))
    assert "minimisers" in gids(figures.critical_energy(network, alpha_max=SMALL_ALPHA_MAX))


def test_density_and_index_draw_a_pb_cube(pb_cube: xr.Dataset) -> None:
    assert {"histogram", "theory-density", "edges", "zero"} <= gids(
        figures.density(pb_cube, phi=0.5, eps=0.1)
    )
    # φ = 2 at ε = 0: H₀'s atom of mass 1/2 at 0.
    assert "atom" in gids(figures.density(pb_cube, phi=2.0, eps=0.0, bins=20))
    figure = figures.index(pb_cube)
    lines = [line for line in figure.axes[0].get_lines() if line.get_gid() == "theory"]
    assert len(lines) == 2 and "critical-energy" in gids(figure) and "mc" in gids(figure)


@pytest.mark.parametrize(
    ("draw", "option"),
    [
        (lambda ds: figures.index_energy(ds, alpha_max=2.0), "alpha_max"),
        (lambda ds: figures.index_energy(ds, sigma=-1.0), "sigma"),
        (lambda ds: figures.critical_energy(ds.drop_vars("energy")), "ds"),
    ],
)
def test_network_figures_name_the_bad_option(draw: Callable[[xr.Dataset], Figure], option: str) -> None:
    with pytest.raises(PlotError, match=rf"^{option}:"):
        draw(synthetic_cube())


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"phi": 0.3, "eps": 0.1}, "phi"),
        ({"phi": 0.5, "eps": 0.05}, "eps"),
        ({"phi": 0.5, "eps": 0.1, "bins": 0}, "bins"),
    ],
)
def test_density_names_the_bad_option(pb_cube: xr.Dataset, options: dict[str, float], option: str) -> None:
    with pytest.raises(PlotError, match=rf"^{option}:"):
        figures.density(pb_cube, **options)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# 5. The notebook
# ----------------------------------------------------------------------------------------------


def test_notebook_runs_on_small_sweeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cube_from_yaml: Callable[[str], Path]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    sweeps = {}
    texts = {
        "network": NETWORK,
        "wigner": PB,
        "product": PB.replace("wigner", "product").replace("pbfig", "pbfig_product"),
    }
    for name, text in texts.items():
        cube = cube_from_yaml(text)
        # The notebook opens RESULTS/<sweep name>.zarr: complete, so no cluster starts.
        (results / cube.name).symlink_to(cube, target_is_directory=True)
        sweeps[name] = tmp_path / f"{name}.yaml"
        sweeps[name].write_text(text, encoding="utf-8")
    env = {
        "HESSWEEP_NETWORK_SWEEP": str(sweeps["network"]),
        "HESSWEEP_WIGNER_SWEEP": str(sweeps["wigner"]),
        "HESSWEEP_PRODUCT_SWEEP": str(sweeps["product"]),
        "HESSWEEP_RESULTS": str(results),
        "HESSWEEP_THEORY_PHIS": "0.25,0.5",
        "HESSWEEP_CURVE_POINTS": "16",
        "HESSWEEP_ALPHA_MAX": str(SMALL_ALPHA_MAX),
        "HESSWEEP_BOOTSTRAP": "10",
    }
    notebook = execute("pennington_bahri", env, monkeypatch)
    for model in MODELS:
        assert f"{model}: α = 0 below ε_c and > 0 above at 2 ratios" in stdout(notebook, "critical-check")
        for phi in ("0.25", "0.5"):
            assert f"exponent on theory: {model}, φ = {phi}: p = 1.49" in stdout(notebook, "theory-exponent")
    assert "0 cells computed" in stdout(notebook, "matrix")
    assert "network: 2 ratios, 32 parameters, 16 runs done" in stdout(notebook, "network-run")
    assert "network table: 2 ratios" in stdout(notebook, "network-table")
    # Densities and index curves (theory), index and density per pb cube, the two network figures.
    assert images(notebook) == 8


# ----------------------------------------------------------------------------------------------
# 5. hessweep plot: the kinds of the pb and pbnet families
# ----------------------------------------------------------------------------------------------

CLI_KINDS = [
    ("pb", ["density", "--sel", "phi=2", "eps=0.02", "--bins", "20"]),
    ("pb", ["index"]),
    ("pbnet", ["index-energy"]),
    ("pbnet", ["critical-energy"]),
]


@pytest.mark.parametrize(("family", "arguments"), CLI_KINDS)
def test_plot_command_draws_the_family_kinds(
    family: str,
    arguments: list[str],
    cube_from_yaml: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = cube_from_yaml(PB if family == "pb" else NETWORK)
    out = tmp_path / "figure.png"
    assert main(["plot", str(store), *arguments, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("family", "arguments", "message"),
    [
        ("pb", ["density", "--sel", "phi=2"], "--sel: density needs phi and eps (missing: eps)"),
        ("pb", ["density", "--sel", "phi=3", "eps=0"], "--sel phi=3: not a value of phi"),
        ("pb", ["density", "--sel", "phi=2", "eps=0", "trial=0"], "--sel trial=0: density selects only"),
        ("pb", ["index-energy"], "KIND index-energy: a figure of pbnet cubes; this cube is of family pb"),
        ("pbnet", ["spectrum", "--sel", "c=1", "loss=x", "signal=0"], "KIND spectrum: a figure of glm cubes"),
    ],
)
def test_plot_command_refuses_a_kind_or_selection_that_does_not_fit(
    family: str,
    arguments: list[str],
    message: str,
    cube_from_yaml: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = cube_from_yaml(PB if family == "pb" else NETWORK)
    assert main(["plot", str(store), *arguments, "-o", str(tmp_path / "figure.png")]) == 2
    assert capsys.readouterr().err.startswith(f"hessweep: {message}")
    assert list(tmp_path.iterdir()) == []
