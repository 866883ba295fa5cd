"""The matrix-free Monte Carlo against the dense eigendecomposition of the same matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from pipeline import lanczos, store, theory
from pipeline.lanczos import FeatureBlocks, LanczosResult
from pipeline.runner import run_sweep
from pipeline.scenario import Scenario
from pipeline.sweep import parse_sweep

# Logistic model and loss at w = w*, a mean μ ⊥ w* of norm 2: one spike (≈ 1.17 at c = 0.5).
SPIKED = Scenario(0.5, model="logistic", loss="logistic", mu={"norm": 2.0, "angle": 90}, w="w_star")
SEED = (7, 1, 2, 0)


def dense_spectrum(features: FeatureBlocks, scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of the very matrix the matrix-free run multiplies by."""
    x = np.vstack([features.block(i) for i in range(features.block_count)]).astype(np.float64)
    g = scenario.curvature(features.y, features.h)
    return np.linalg.eigh(x.T @ (g[:, None] * x) / features.n)


def ks_against(result: LanczosResult, eigenvalues: np.ndarray) -> float:
    """Kolmogorov distance of the quadrature's distribution function to the empirical one."""
    points = np.sort(eigenvalues)
    below = np.arange(points.size) / points.size
    above = np.arange(1, points.size + 1) / points.size
    estimate = result.cdf(points)
    return float(max(np.max(np.abs(estimate - below)), np.max(np.abs(estimate - above))))


@pytest.fixture(scope="module")
def spiked() -> tuple[FeatureBlocks, LanczosResult, np.ndarray, np.ndarray]:
    features = lanczos.draw(SPIKED, 1500, SEED)
    result = lanczos.analyse(features, SPIKED, SEED, probes=6, steps=60)
    values, vectors = dense_spectrum(features, SPIKED)
    return features, result, values, vectors


def test_quadrature_is_a_probability_measure(spiked: tuple) -> None:
    _, result, values, _ = spiked
    assert result.nodes.shape == result.weights.shape == (360,)
    assert np.all(np.diff(result.nodes) >= 0)
    assert np.all(result.weights > 0)
    assert result.weights.sum() == pytest.approx(1.0, abs=1e-12)
    # Ritz values lie in the spectrum's hull (Cauchy interlacing), up to rounding.
    tolerance = 1e-12 * values[-1]
    assert values[0] - tolerance <= result.nodes[0] and result.nodes[-1] <= values[-1] + tolerance


def test_density_agrees_with_the_dense_spectrum(spiked: tuple) -> None:
    # The quadrature of `steps` = 60 steps resolves the distribution function to about 1/60 (the
    # Christoffel weight of its nodes, tests show 0.8/steps on bulk-shaped spectra); 6 probes
    # at p = 1500 add a sampling error of about √(1/(2·6·1500)) = 0.007.
    _, result, values, _ = spiked
    assert ks_against(result, values) < 0.02


def test_extreme_pairs_agree_with_the_dense_ones(spiked: tuple) -> None:
    features, result, values, vectors = spiked
    # The spike is isolated: Lanczos converges to it geometrically, here to rounding.
    assert result.top[0] == pytest.approx(values[-1], rel=1e-10)
    assert result.residual_top[0] < 1e-10
    mu = features.vectors["mu"] / np.linalg.norm(features.vectors["mu"])
    assert result.align_top["mu"][0] == pytest.approx((vectors[:, -1] @ mu) ** 2, abs=1e-8)
    # The next one sits at the bulk's edge, in a cluster: within its residual (an eigenvalue lies
    # within ‖Hu − θu‖ of every Ritz value), which is small after 60 steps.
    assert np.min(np.abs(values - result.top[1])) <= result.residual_top[1] * np.max(np.abs(values)) + 1e-12
    assert result.bottom[0] >= values[0] - 1e-12


def test_atom_and_negative_mass_for_p_above_n() -> None:
    # c = 2, square loss: H = XᵀX/n has p − n zero eigenvalues (half of them), none negative.
    scenario = Scenario(2.0, model="linear", loss="square")
    result = lanczos.sample(scenario, 1200, SEED, probes=4, steps=40)
    assert result.atom_zero == pytest.approx(0.5, abs=0.03)  # sampling error of 4 probes: ±0.01
    assert result.negative_fraction == 0.0
    # Phase retrieval: g = 3h² − 1 < 0 on a third of the samples: negative eigenvalues.
    phase = Scenario(0.5, model="phase", loss="phase")
    features = lanczos.draw(phase, 1500, SEED)
    values, _ = dense_spectrum(features, phase)
    negative = np.mean(values < -1e-9 * np.max(np.abs(values)))
    result = lanczos.analyse(features, phase, SEED, probes=6, steps=60)
    assert result.negative_fraction == pytest.approx(negative, abs=0.02)


def test_float32_products_are_within_tolerance() -> None:
    # The float32 draw holds other numbers than the float64 one, so compare each with the exact
    # spectrum of its own matrix: float32 products only add their rounding (~1e-7 relative).
    features = lanczos.draw(SPIKED, 1500, SEED, dtype="float32")
    assert features.block(0).dtype == np.float32
    result = lanczos.analyse(features, SPIKED, SEED, probes=6, steps=60)
    values, _ = dense_spectrum(features, SPIKED)
    assert result.top[0] == pytest.approx(values[-1], rel=1e-5)
    assert ks_against(result, values) < 0.02


def test_draw_is_keyed_and_independent_of_threads_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    small = 200 * 1200 * 8  # a few generation blocks at p = 1200
    monkeypatch.setattr(lanczos, "_GENERATION_BYTES", small)
    scenario = Scenario(0.5, model="logistic", loss="logistic")
    runs = []
    with threadpool_limits(1):
        for threads, memory in ((1, 1e12), (2, 1e12), (3, 0.0)):
            monkeypatch.setattr(lanczos, "_threads", lambda threads=threads: threads)
            features = lanczos.draw(scenario, 1200, SEED, memory=memory)
            assert features.block_count > 1 and features.held == (memory > 0)
            runs.append(lanczos.analyse(features, scenario, SEED, probes=4, steps=20))
    for other in runs[1:]:
        np.testing.assert_array_equal(other.nodes, runs[0].nodes)
        np.testing.assert_array_equal(other.weights, runs[0].weights)
        np.testing.assert_array_equal(other.align_top["w"], runs[0].align_top["w"])
    another = lanczos.sample(scenario, 1200, (*SEED[:-1], 1), probes=4, steps=20)
    assert not np.array_equal(another.nodes, runs[0].nodes)


def test_density_follows_the_quadrature() -> None:
    scenario = Scenario(0.5, model="linear", loss="square")
    result = lanczos.sample(scenario, 2000, SEED, probes=8, steps=40)
    limit = theory.solve(scenario)
    density = result.density(limit.x)
    # The Gaussians of the nodes at the edges spill past the theory's grid, which ends near the
    # support: about 1% of the mass is outside it at 40 steps.
    assert np.trapezoid(density, limit.x) == pytest.approx(1.0, abs=0.025)
    # Smoothing blurs the square-root edges; inside the bulk (its middle 80%) the error is about
    # 2% of the peak at 40 steps (p = 2000 adds finite-size deviations of order 1/p).
    span = limit.edge_right - limit.edge_left
    inside = (limit.x > limit.edge_left + 0.1 * span) & (limit.x < limit.edge_right - 0.1 * span)
    assert np.max(np.abs(density[inside] - limit.density[inside])) < 0.05 * np.max(limit.density)
    assert np.trapezoid(np.abs(density - limit.density), limit.x) < 0.05


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"probes": 0}, "probes must be an integer >= 1"),
        ({"steps": 1.5}, "steps must be an integer >= 1"),
        ({"probes": 10, "steps": 40}, "probes × steps = 400 must be < p = 400"),
        ({"k": 200, "probes": 2, "steps": 50}, "exceeds the Krylov dimension"),
    ],
)
def test_bad_options_are_refused(options: dict, message: str) -> None:
    features = lanczos.draw(Scenario(0.5, model="linear", loss="square"), 400, SEED)
    with pytest.raises(ValueError, match=message):
        lanczos.analyse(features, Scenario(0.5, model="linear", loss="square"), SEED, **options)


def test_bad_draws_are_refused() -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        lanczos.draw(SPIKED, 400, SEED, dtype="float16")
    with pytest.raises(ValueError, match="p must be an integer >= 2"):
        lanczos.draw(SPIKED, 1, SEED)
    features = lanczos.draw(SPIKED, 400, SEED)
    with pytest.raises(ValueError, match="the scenario has c = 2"):
        lanczos.analyse(features, SPIKED.replace(c=2.0), SEED, probes=2, steps=10)


def test_sweep_cube_holds_the_direct_results(cube_from_yaml, tmp_path: Path) -> None:
    text = """
name: lanczos_cube
p: 900
trials: 2
model: logistic
grid: {c: [0.5, 2.0], loss: [logistic, square], signal: [0.0, 2.0]}
fixed: {w_star: {norm: 1.0}, w: w_star, mu: {angle: 90}}
montecarlo: {method: lanczos, probes: 4, steps: 30, dtype: float32}
theory: {points: 64}
"""
    spec = parse_sweep(text)
    ds = store.open_cube(cube_from_yaml(text)).load()
    assert ds.attrs["montecarlo_method"] == "lanczos" and "eigenvalues" not in ds
    assert bool(ds["done"].all())
    # One point, recomputed directly from its keyed seed: the cube holds it bit for bit.
    i_c, i_loss, i_signal, trial = 1, 0, 1, 1
    scenario = spec.scenario(i_c, i_loss, i_signal)
    direct = lanczos.sample(
        scenario, 900, spec.seed_for(i_c, i_signal, trial), probes=4, steps=30, dtype="float32"
    )
    point = ds.isel(c=i_c, loss=i_loss, signal=i_signal, trial=trial)
    np.testing.assert_array_equal(point["mc_nodes"].values, direct.nodes)
    np.testing.assert_array_equal(point["mc_weights"].values, direct.weights)
    np.testing.assert_array_equal(point["mc_extreme"].values, np.concatenate([direct.bottom, direct.top]))
    np.testing.assert_array_equal(point["mc_density"].values, direct.density(point["density_x"].values))
    assert float(point["mc_atom_zero"]) == direct.atom_zero
    # All losses of a point share the draw and the probes: the square loss's quadrature at c = 2
    # has the atom of p − n zeros, about half the mass.
    assert float(ds["mc_atom_zero"].isel(c=1, loss=1).mean()) == pytest.approx(0.5, abs=0.05)


@pytest.mark.distributed
def test_sweep_on_a_local_cluster_equals_direct_one_thread_runs(tmp_path: Path) -> None:
    # Workers run BLAS and the products on one thread each; the same computation in this process
    # under a one-thread BLAS gives the same bits, whichever worker ran which point.
    text = """
name: lanczos_cluster
p: 700
trials: 2
model: logistic
grid: {c: [0.5, 2.0], loss: [logistic], signal: [1.0, 2.0]}
fixed: {w_star: {norm: 1.0}, w: w_star, mu: {angle: 90}}
montecarlo: {method: lanczos, probes: 3, steps: 30}
theory: {points: 48}
"""
    spec = parse_sweep(text)
    report = run_sweep(
        spec, tmp_path / "cube.zarr", workers=2, progress=False, dashboard_address=":0", echo=None
    )
    assert report.ok and report.computed_cells == 4
    ds = store.open_cube(tmp_path / "cube.zarr").load()
    with threadpool_limits(1):
        for i_c, i_signal, trial in ((0, 0, 1), (1, 1, 0)):
            scenario = spec.scenario(i_c, 0, i_signal)
            seed = spec.seed_for(i_c, i_signal, trial)
            direct = lanczos.sample(scenario, 700, seed, probes=3, steps=30)
            point = ds.isel(c=i_c, loss=0, signal=i_signal, trial=trial)
            np.testing.assert_array_equal(point["mc_nodes"].values, direct.nodes)
            np.testing.assert_array_equal(point["mc_weights"].values, direct.weights)
            np.testing.assert_array_equal(
                point["mc_align"].sel(target="mu").values[2:], direct.align_top["mu"]
            )
