"""Tests of pipeline.pbnet: the tanh network's derivatives, the critical-point search, the small-index fit."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from pipeline.errors import ScenarioError
from pipeline.pbnet import (
    CONVERGENCE_TOLERANCE,
    draw_problem,
    energy,
    find_critical_point,
    fit_index_law,
    gradient,
    hessian,
    hessian_parts,
    hessian_vector_product,
    loss,
    negative_fraction,
    survey,
)

# Central differences with step h: truncation h²·|f'''|/6 ≈ 2e-11·|f'''| (for the Hessian f''' is the
# loss's fourth derivative, up to ~10² at these N(0, 1) weights and data: ≲ 2e-9) plus rounding
# ε·|f|/h ≈ 1e-10.  Measured: 4e-11 (gradient), 1.3e-9 (Hessian), 6e-10 (H₀ from J); a wrong term in a
# formula is off by 1e-2 or more.
FD_STEP = 1e-5
FD_TOLERANCE = 1e-8
# Two exact formulas for the same numbers (Hv against the matrix H times v; the spectrum at θ = 0
# against its closed form): they differ by rounding of sums of m ≤ 9 terms of size O(1), ~1e-15, and
# eigh's P·ε·‖H‖; 1e-12 leaves a factor 100.
EXACT_TOLERANCE = 1e-12


def _shapes_and_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A non-square network (n₀ = 3, n₁ = 4, n₂ = 2, m = 7): a transposed index fails loudly."""
    n0, n1, n2, m = 3, 4, 2, 7
    X = rng.standard_normal((n0, m))
    Y = rng.standard_normal((n2, m))
    theta = rng.standard_normal(n1 * (n0 + n2))
    return theta, X, Y


def _outputs(theta: np.ndarray, X: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """ŷ = W₂ tanh(W₁X), written out independently of the module."""
    n0 = X.shape[0]
    W1 = theta[: n1 * n0].reshape(n1, n0)
    W2 = theta[n1 * n0 :].reshape(n2, n1)
    return W2 @ np.tanh(W1 @ X)


def _central(f, theta: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Central differences of ``f`` along every coordinate, stacked on the last axis."""
    columns = []
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = FD_STEP
        columns.append((np.asarray(f(theta + step)) - np.asarray(f(theta - step))) / (2 * FD_STEP))
    return np.stack(columns, axis=-1)


# --- 1. derivatives ----------------------------------------------------------------------------------


def test_loss_is_the_mean_half_squared_residual(rng: np.random.Generator) -> None:
    theta, X, Y = _shapes_and_data(rng)
    residual = _outputs(theta, X, 4, 2) - Y
    assert loss(theta, X, Y) == pytest.approx(0.5 * np.sum(residual**2) / X.shape[1], rel=1e-14)
    assert energy(theta, X, Y) == pytest.approx(loss(theta, X, Y) / 2, rel=1e-14)


def test_zero_network_has_energy_one_half(rng: np.random.Generator) -> None:
    """The paper's normalisation: ε(θ = 0) = (1/2mn) Σ y², ½ in expectation for N(0, 1) targets."""
    n, m = 16, 512
    X, Y = rng.standard_normal((n, m)), rng.standard_normal((n, m))
    value = energy(np.zeros(2 * n * n), X, Y)
    assert value == pytest.approx(0.5 * np.mean(Y**2), rel=1e-14)
    # (1/2nm) Σ y² has standard deviation ½√(2/nm) = 0.0078 here: 4σ.
    assert abs(value - 0.5) < 4 * 0.5 * math.sqrt(2 / (n * m))


def test_gradient_matches_central_differences(rng: np.random.Generator) -> None:
    theta, X, Y = _shapes_and_data(rng)
    numeric = _central(lambda t: loss(t, X, Y), theta)
    np.testing.assert_allclose(gradient(theta, X, Y), numeric, rtol=0, atol=FD_TOLERANCE)


def test_hessian_matches_central_differences_of_the_gradient(rng: np.random.Generator) -> None:
    theta, X, Y = _shapes_and_data(rng)
    H = hessian(theta, X, Y)
    numeric = _central(lambda t: gradient(t, X, Y), theta)
    np.testing.assert_allclose(H, numeric, rtol=0, atol=FD_TOLERANCE)
    np.testing.assert_array_equal(H, H.T)


def test_split_is_gauss_newton_plus_residual_part(rng: np.random.Generator) -> None:
    theta, X, Y = _shapes_and_data(rng)
    n1, n2, m = 4, 2, X.shape[1]
    H0, H1 = hessian_parts(theta, X, Y)
    np.testing.assert_array_equal(H0 + H1, hessian(theta, X, Y))
    # H₀ = JᵀJ/m with J the Jacobian of ŷ, here by central differences of an independent ŷ.
    J = _central(lambda t: _outputs(t, X, n1, n2).ravel(), theta)
    np.testing.assert_allclose(H0, J.T @ J / m, rtol=0, atol=FD_TOLERANCE)
    # Positive semidefinite to rounding: eigh's error is O(P·ε·‖H₀‖).
    assert np.linalg.eigvalsh(H0).min() >= -theta.size * np.finfo(float).eps * np.abs(H0).max()
    # ŷ is linear in W₂: no residual curvature on the W₂ × W₂ block.
    p1 = n1 * X.shape[0]
    assert not np.any(H1[p1:, p1:])


def test_hessian_vector_product_is_the_hessian_times_v(rng: np.random.Generator) -> None:
    theta, X, Y = _shapes_and_data(rng)
    v = rng.standard_normal(theta.size)
    np.testing.assert_allclose(
        hessian_vector_product(theta, X, Y, v), hessian(theta, X, Y) @ v, rtol=0, atol=EXACT_TOLERANCE
    )


def test_hessian_at_zero_is_plus_minus_the_singular_values_of_yx(rng: np.random.Generator) -> None:
    """At θ = 0 only H₁'s W₁–W₂ block survives, δ_ac (−YXᵀ/m)[k, b] ⊗ 1: each of the n₁ units
    contributes ±σ_i(YXᵀ/m) and n₀ + n₂ − 2·min(n₀, n₂) zeros."""
    n0, n1, n2, m = 3, 4, 2, 9
    X, Y = rng.standard_normal((n0, m)), rng.standard_normal((n2, m))
    sigma = np.linalg.svd(Y @ X.T / m, compute_uv=False)
    zeros = n0 + n2 - 2 * sigma.size
    expected = np.sort(np.tile(np.concatenate([sigma, -sigma, np.zeros(zeros)]), n1))
    theta = np.zeros(n1 * (n0 + n2))
    assert not np.any(gradient(theta, X, Y))
    np.testing.assert_allclose(np.linalg.eigvalsh(hessian(theta, X, Y)), expected, atol=EXACT_TOLERANCE)


@pytest.mark.parametrize(
    ("theta", "X", "Y", "field"),
    [
        (np.zeros(7), np.ones((2, 3)), np.ones((2, 3)), "theta"),
        (np.zeros(8), np.ones((2, 3)), np.ones((2, 4)), "Y"),
        (np.zeros(8), np.ones(3), np.ones((2, 3)), "X"),
    ],
)
def test_bad_shapes_are_refused(theta: np.ndarray, X: np.ndarray, Y: np.ndarray, field: str) -> None:
    with pytest.raises(ScenarioError) as error:
        gradient(theta, X, Y)
    assert error.value.field == field


def test_hessian_vector_product_refuses_a_wrong_direction(rng: np.random.Generator) -> None:
    theta, X, Y = _shapes_and_data(rng)
    with pytest.raises(ScenarioError, match=r"^v:"):
        hessian_vector_product(theta, X, Y, np.ones(theta.size + 1))


# --- 2. one critical point ---------------------------------------------------------------------------


def test_draw_problem_keys_each_part_separately() -> None:
    first = draw_problem(0.25, (3, 1), n=16)
    assert first.m == 128 and first.X.shape == first.Y.shape == (16, 128)
    # The start's entries are N(0, 1/n): the variance of 512 of them is 1/16 within 4 standard
    # errors (√(2/512) relative).
    assert abs(np.var(first.theta0) * 16 - 1) < 4 * math.sqrt(2 / 512)
    assert 0 <= first.level < loss(first.theta0, first.X, first.Y)
    # Another init scale changes the start only: the data and the uniform draw of the level stay.
    second = draw_problem(0.25, (3, 1), n=16, init_scale=2.0)
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(2.0 * first.theta0, second.theta0)
    fraction = first.level / loss(first.theta0, first.X, first.Y)
    assert second.level / loss(second.theta0, second.X, second.Y) == pytest.approx(fraction, rel=1e-14)
    other = draw_problem(0.25, (3, 2), n=16)
    assert not np.array_equal(first.X, other.X)
    np.testing.assert_array_equal(draw_problem(0.25, np.random.SeedSequence((3, 1)), n=16).X, first.X)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"phi": 0.0}, "phi"),
        ({"phi": math.nan}, "phi"),
        ({"phi": 1e6}, "phi"),  # m = round(32e-6) = 0
        ({"n": 0}, "n"),
        ({"seed": None}, "seed"),
        ({"seed": -1}, "seed"),
        ({"init_scale": -1.0}, "init_scale"),
    ],
)
def test_draw_problem_refuses_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"phi": 0.5, "seed": 1, "n": 4} | kwargs
    with pytest.raises(ScenarioError) as error:
        draw_problem(**arguments)  # type: ignore[arg-type]
    assert error.value.field == field


@pytest.fixture(scope="module")
def critical_point_pair():  # type: ignore[no-untyped-def]
    """One search at n = 16, φ = 1/2 (m = 64), run twice on one BLAS thread."""
    with threadpool_limits(limits=1):
        return [find_critical_point(0.5, (11, 0, 3)) for _ in range(2)]


def test_critical_point_is_critical_by_independent_checks(critical_point_pair) -> None:  # type: ignore[no-untyped-def]
    point = critical_point_pair[0]
    problem = draw_problem(0.5, (11, 0, 3))
    g = gradient(point.theta, problem.X, problem.Y)
    assert point.converged, point.message
    assert point.gradient_norm_sq == pytest.approx(float(g @ g), rel=1e-12)
    assert point.gradient_norm_sq <= CONVERGENCE_TOLERANCE
    assert point.energy == pytest.approx(energy(point.theta, problem.X, problem.Y), rel=1e-14)
    # At a critical point ⟨W₂, ∇_{W₂}L⟩ = ⟨E, Ŷ⟩/m = 0, so ‖E‖² = ‖Y‖² − ‖Ŷ‖² ≤ ‖Y‖²: the energy is
    # at most the zero network's, up to ‖W₂‖·√J/n off the exact point.
    n = point.n
    W2 = point.theta[n * n :]
    ceiling = energy(np.zeros_like(point.theta), problem.X, problem.Y)
    assert 0.0 <= point.energy <= ceiling + np.linalg.norm(W2) * math.sqrt(point.gradient_norm_sq) / n
    # ... and the zero network's energy is ½ within 4σ = 4·½√(2/nm).
    assert abs(ceiling - 0.5) < 4 * 0.5 * math.sqrt(2 / (n * point.m))
    # The spectrum and the index, recomputed.
    np.testing.assert_allclose(
        point.eigenvalues, np.linalg.eigvalsh(hessian(point.theta, problem.X, problem.Y)), atol=1e-12
    )
    assert np.all(np.diff(point.eigenvalues) >= 0) and point.eigenvalues.size == 2 * n * n
    assert 0.0 <= point.index <= 1.0
    assert point.index == negative_fraction(point.eigenvalues)
    assert point.negative == round(point.index * point.eigenvalues.size)
    assert point.seed == (11, 0, 3)
    assert 0.0 <= point.level < point.initial_energy
    assert point.iterations == point.descent_iterations + point.j_iterations


def test_same_seed_is_bit_identical(critical_point_pair) -> None:  # type: ignore[no-untyped-def]
    first, second = critical_point_pair
    assert not first.theta.flags.writeable and not first.eigenvalues.flags.writeable
    for item in dataclasses.fields(first):
        a, b = getattr(first, item.name), getattr(second, item.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b, item.name


def test_negative_fraction_counts_beyond_the_zero_tolerance() -> None:
    values = np.array([-2.0, -1e-7, -1e-5, 0.0, 1.0, 2.0])
    assert negative_fraction(values, zero_tolerance=1e-6) == 2 / 6  # threshold 2e-6
    assert negative_fraction(values, zero_tolerance=0.0) == 3 / 6
    with pytest.raises(ScenarioError, match=r"^zero_tolerance:"):
        negative_fraction(values, zero_tolerance=-1.0)


def test_unconverged_runs_are_flagged() -> None:
    """A cap too small to reach J ≤ 10⁻⁶ is reported, not hidden."""
    point = find_critical_point(0.5, (11, 0, 3), n=6, max_descent_iterations=1, max_j_iterations=3)
    assert not point.converged
    assert point.gradient_norm_sq > CONVERGENCE_TOLERANCE
    assert point.j_iterations <= 3
    assert "cap" in point.message or "stalled" in point.message


# --- 3. the experiment at small size -----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_survey():  # type: ignore[no-untyped-def]
    """n = 6 (72 parameters), φ ∈ {1/4, 1/2} (m = 48, 24), 10 runs each."""
    return survey([0.25, 0.5], 10, seed=7, n=6)


@pytest.mark.slow
def test_small_experiment_index_grows_with_energy(small_survey) -> None:  # type: ignore[no-untyped-def]
    points = [p for p in small_survey if p.converged]
    # The search converged in every run of this survey; allow one failure per ratio.
    assert len(points) >= len(small_survey) - 2
    for phi in (0.25, 0.5):
        runs = sorted((p for p in points if p.phi == phi), key=lambda p: p.energy)
        # The lowest energies found are minimisers...
        assert runs[0].index == 0.0
        # ... and the highest are saddles.
        assert runs[-1].index > 0.0
    energies = [p.energy for p in points]
    indices = [p.index for p in points]
    result = spearmanr(energies, indices)
    # Measured: ρ = 0.74 over the 20 runs (p = 2e-4).  Under independence ρ has standard deviation
    # 1/√(N − 1) ≈ 0.23, so ρ > 0.5 is over 2σ and the p-value below 1e-3 rules out chance.
    assert result.statistic > 0.5
    assert result.pvalue < 1e-3


# --- 4. the small-index fit --------------------------------------------------------------------------


def test_fit_recovers_a_known_law_from_noisy_energies(rng: np.random.Generator) -> None:
    alpha = rng.integers(1, 40, size=200) / 512
    noise = 0.005
    energies = 0.26 + (alpha / 3.0) ** (2 / 3) + noise * rng.standard_normal(alpha.size)
    fit = fit_index_law(energies, alpha)
    # Sampling error only: 4 standard errors of the intercept.
    assert abs(fit.critical_energy - 0.26) < 4 * fit.critical_energy_stderr
    assert fit.critical_energy_stderr < 0.01
    assert fit.points == 200 and fit.exponent == 1.5
    assert fit.rms == pytest.approx(noise, rel=0.2)  # 200 residuals: rms within ~5% (4σ ≈ 20%)
    free = fit_index_law(energies, alpha, exponent=None)
    # The exponent from 200 noisy points: measured 1.42 here; over 50 other draws mean 1.52 and
    # standard deviation 0.085, so 4 of them: 0.35.
    assert abs(free.exponent - 1.5) < 0.35


def test_fit_with_free_exponent_is_exact_on_exact_data() -> None:
    alpha = np.array([0.0, 0.004, 0.01, 0.02, 0.05, 0.3])  # 0 and 0.3 lie outside (0, 0.1]
    energies = 0.1 + (alpha / 0.5) ** (1 / 1.7)
    free = fit_index_law(energies, alpha, exponent=None)
    # The profile search stops at |Δq| ≤ 1e-6 in q = 1/p.
    assert free.exponent == pytest.approx(1.7, abs=1e-4)
    assert free.critical_energy == pytest.approx(0.1, abs=1e-5)
    assert free.points == 4


def test_fit_refuses_too_few_points_or_a_falling_index() -> None:
    with pytest.raises(ScenarioError, match=r"^index:"):
        fit_index_law(np.array([0.3, 0.4]), np.array([0.0, 0.01]))
    with pytest.raises(ScenarioError, match="does not grow"):
        fit_index_law(np.array([0.4, 0.3, 0.2]), np.array([0.01, 0.02, 0.03]))
    with pytest.raises(ScenarioError, match=r"^alpha_max:"):
        fit_index_law(np.array([0.4, 0.3]), np.array([0.01, 0.02]), alpha_max=0.0)
