"""Tests of pipeline.relu: derivatives against finite differences, the global minimum's closed form,
the symmetric families of spurious minima and their Hessian spectra (Arjevani & Field, NeurIPS 2020)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import pipeline.relu
from pipeline.errors import ScenarioError
from pipeline.relu import (
    CriticalPoint,
    classify,
    find_critical_point,
    five_parameter_point,
    fixed_space,
    flip_start,
    global_minimum_spectrum,
    gradient,
    hessian,
    isotropy,
    loss,
    random_start,
    standard_teacher,
    survey,
)

GAMMA = 1.0 / (2.0 * math.pi)
EPS = float(np.finfo(float).eps)
# The constants near which the bounded part of the spectrum concentrates (the md's claim (a)).
CONSTANTS = np.array([0.25 - GAMMA, 0.25, 0.25 + GAMMA])
FAMILY_KS = range(6, 21)
# Finite-difference steps: h = 1e-5 balances the O(h²) truncation of central differences of a
# smooth function against the O(ε/h) rounding; at (anti)parallel pairs the gradient is only C¹
# with a Lipschitz derivative, the truncation is O(h), and a smaller step balances it.
SMOOTH_STEP = 1e-5
KINK_STEP = 1e-7
# Eigenvalues of a symmetric point that are equal by symmetry come out of eigvalsh equal to
# kd·ε·‖H‖ ≈ 1e-12 (k = 20, ‖H‖ ≈ 6) plus the point's own error (|∇L| ≤ 1e-12); the closest distinct
# eigenvalues of the type-A points at 6 ≤ k ≤ 20 are 1e-4 apart.  Clusters are split at 1e-8.
CLUSTER_TOLERANCE = 1e-8


def _central_difference(
    func: Callable[[np.ndarray], np.ndarray | float], X: np.ndarray, h: float
) -> np.ndarray:
    """``∂func/∂X`` by central differences, one column per entry of ``X`` (``X.ravel()`` order)."""
    columns = []
    for a in range(X.size):
        step = np.zeros(X.size)
        step[a] = h
        step = step.reshape(X.shape)
        columns.append(np.ravel((np.asarray(func(X + step)) - np.asarray(func(X - step))) / (2.0 * h)))
    return np.array(columns).T


def _assert_matches_differences(
    exact: np.ndarray, func: Callable[[np.ndarray], np.ndarray | float], X: np.ndarray, h: float, scale: float
) -> float:
    """Compare ``exact`` with central differences; return the largest error.

    Tolerance: the truncation error of the step-``h`` difference, estimated from the difference at
    ``2h`` (Richardson: truncation is 4× larger at 2h for a C³ function, 2× for a C^{1,1} one, so
    ``|D(h) − D(2h)|`` bounds it either way), plus the rounding error ``ε·scale/h`` of the
    differenced values (``scale`` bounds the sums of absolute terms in them), with a factor 10.
    """
    fine = _central_difference(func, X, h).reshape(exact.shape)
    coarse = _central_difference(func, X, 2.0 * h).reshape(exact.shape)
    tolerance = 2.0 * np.abs(fine - coarse).max() + 10.0 * EPS * scale / h
    error = float(np.abs(exact - fine).max())
    assert error <= tolerance, (error, tolerance)
    return error


def _clusters(values: np.ndarray) -> list[tuple[float, int]]:
    """Distinct eigenvalues and their multiplicities (sorted values split at gaps > CLUSTER_TOLERANCE)."""
    values = np.sort(values)
    cut = np.flatnonzero(np.diff(values) > CLUSTER_TOLERANCE) + 1
    return [(float(group.mean()), group.size) for group in np.split(values, cut)]


def _distance_to_constants(values: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(values)[:, None] - CONSTANTS[None, :]).min(axis=1)


def _fit_exponent(ks: np.ndarray, values: np.ndarray) -> float:
    return float(np.polyfit(np.log(ks), np.log(values), 1)[0])


def _scale(W: np.ndarray, V: np.ndarray) -> float:
    """A bound on the sums of absolute terms in L and ∇L: k² pairs of terms of size |w||v|."""
    k = W.shape[0]
    return float(k * k * max(np.abs(W).max(), np.abs(V).max()) ** 2 * W.shape[1])


@pytest.fixture(scope="module")
def type_a() -> dict[int, tuple[CriticalPoint, np.ndarray]]:
    """The Δ(S_{k−1} × S_1) family for k = 6 … 20 (fixed-space search from "flip the last neuron") and
    each point's Hessian eigenvalues."""
    family = {}
    for k in FAMILY_KS:
        V = standard_teacher(k)
        point = find_critical_point(flip_start([k - 1, 1]), V, fixed_space=fixed_space([k - 1, 1]))
        family[k] = (point, np.linalg.eigvalsh(hessian(point.W, V)))
    return family


# --- derivatives ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "d"), [(1, 1), (2, 3), (4, 4), (3, 7)])
def test_gradient_and_hessian_match_central_differences(k: int, d: int) -> None:
    rng = np.random.default_rng(np.random.SeedSequence((11, k, d)))
    W = rng.standard_normal((k, d))
    V = standard_teacher(k, d)
    scale = _scale(W, V)
    _assert_matches_differences(gradient(W, V), lambda X: loss(X, V), W, SMOOTH_STEP, scale)
    _assert_matches_differences(hessian(W, V), lambda X: gradient(X, V), W, SMOOTH_STEP, scale)


def test_derivatives_with_a_general_teacher() -> None:
    # A teacher that is not orthonormal (rows of different norms at oblique angles).
    rng = np.random.default_rng(np.random.SeedSequence(12))
    W, V = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    scale = _scale(W, V)
    _assert_matches_differences(gradient(W, V), lambda X: loss(X, V), W, SMOOTH_STEP, scale)
    _assert_matches_differences(hessian(W, V), lambda X: gradient(X, V), W, SMOOTH_STEP, scale)


def test_hessian_at_parallel_and_antiparallel_pairs() -> None:
    # Row 0 parallel to the teacher's v_0 (θ = 0), rows 1 and 2 antiparallel (θ = π), row 3
    # parallel to row 2 with another norm, row 2 antiparallel to v_2: every degenerate case at once.
    V = standard_teacher(4, 5)
    W = np.array(
        [
            [2.0, 0.0, 0.0, 0.0, 0.0],
            [0.3, -0.4, 0.5, 0.2, 0.1],
            [-0.3, 0.4, -0.5, -0.2, -0.1],
            [-0.6, 0.8, -1.0, -0.4, -0.2],
        ]
    )
    H = hessian(W, V)
    assert np.all(np.isfinite(H)) and np.array_equal(H, H.T)
    scale = _scale(W, V)
    _assert_matches_differences(gradient(W, V), lambda X: loss(X, V), W, KINK_STEP, scale)
    _assert_matches_differences(H, lambda X: gradient(X, V), W, KINK_STEP, scale)
    # Continuity: the Hessian is Lipschitz at θ = 0, π, so moving W by t moves it by O(t).
    direction = np.random.default_rng(np.random.SeedSequence(13)).standard_normal(W.shape)
    changes = [np.abs(hessian(W + t * direction, V) - H).max() for t in (1e-4, 1e-6)]
    assert changes[1] < 2e-2 * changes[0]  # 100× smaller step: ≈ 100× smaller change (O(t)), not O(1)


@pytest.mark.parametrize(
    ("W", "V", "field"),
    [
        (np.eye(3), np.eye(4), "W"),  # shapes differ
        (np.eye(4, 3), np.eye(4, 3), "W"),  # d < k
        (np.ones(3), np.ones(3), "W"),  # not 2-d
        (np.array([[1.0, 0.0], [0.0, 0.0]]), np.eye(2), "W"),  # a zero row
        (np.eye(2), np.array([[1.0, np.nan], [0.0, 1.0]]), "V"),  # non-finite
        (np.array([[np.inf, 0.0], [0.0, 1.0]]), np.eye(2), "W"),
    ],
)
def test_bad_input_names_the_argument(W: np.ndarray, V: np.ndarray, field: str) -> None:
    for func in (loss, gradient, hessian, classify):
        with pytest.raises(ScenarioError) as error:
            func(W, V)
        assert error.value.field == field


def test_bad_search_arguments() -> None:
    V = standard_teacher(4)
    with pytest.raises(ScenarioError, match="fixed_space"):
        find_critical_point(np.eye(4), V, fixed_space=fixed_space([2, 1]))
    with pytest.raises(ScenarioError, match="gtol"):
        find_critical_point(np.eye(4), V, gtol=-1.0)
    with pytest.raises(ScenarioError, match="blocks"):
        fixed_space([3, 0])
    with pytest.raises(ScenarioError, match="d"):
        global_minimum_spectrum(4, 3)


# --- the global minimum --------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "d"), [(3, 3), (5, 9), (20, 20)])
def test_global_minimum_is_positive_definite(k: int, d: int) -> None:
    V = standard_teacher(k, d)
    # The three sums of L are computed by the same code at W = V: they cancel exactly.
    assert loss(V, V) == 0.0
    assert np.abs(gradient(V, V)).max() <= 10.0 * EPS * k
    values = np.linalg.eigvalsh(hessian(V, V))
    # PSD with no kernel, for d > k too: the smallest eigenvalue is 1/4 − 1/2π (≈ 0.09) up to the
    # eigensolver's kd·ε·‖H‖ (< 1e-12).
    assert values[0] == pytest.approx(0.25 - GAMMA, abs=1e-12)
    assert classify(V, V).kind == "global minimum"
    assert classify(V, V).nullity == 0


@pytest.mark.parametrize(
    ("k", "d"), [(k, k) for k in range(1, 21)] + [(1, 4), (2, 5), (3, 7), (6, 10), (10, 13), (20, 23)]
)
def test_global_minimum_spectrum_closed_form(k: int, d: int) -> None:
    # eigvalsh is backward stable: eigenvalue errors ≤ kd·ε·‖H‖ ≈ 460·2.2e-16·6 ≈ 6e-13 at the largest
    # case here (measured ≤ 1e-14).
    V = standard_teacher(k, d)
    numeric = np.linalg.eigvalsh(hessian(V, V))
    np.testing.assert_allclose(global_minimum_spectrum(k, d), numeric, rtol=0, atol=1e-12)


# --- symmetry ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("blocks", "d"), [([5, 1], 6), ([4, 2], 6), ([3, 2, 1], 8)])
def test_gradient_lies_in_the_fixed_space(blocks: list[int], d: int) -> None:
    # L is invariant under the group, so ∇L at a fixed point is fixed too: projecting it on the fixed
    # space changes it only by rounding (sums of k terms of size ~1: ~k·ε).
    space = fixed_space(blocks, d)
    k = sum(blocks)
    rng = np.random.default_rng(np.random.SeedSequence((14, k, d)))
    W = space.matrix(rng.standard_normal(space.dimension))
    G = gradient(W, standard_teacher(k, d))
    assert np.abs(space.project(G) - G).max() <= 100.0 * EPS * k
    assert np.abs(space.project(W) - W).max() <= 10.0 * EPS


def test_fixed_space_of_the_five_parameter_family() -> None:
    space = fixed_space([6, 1])
    W = five_parameter_point(7, 0.9, -0.1, 0.3, 0.2, -0.6)
    assert space.dimension == 5
    assert np.array_equal(space.project(W), W) or np.abs(space.project(W) - W).max() <= 4 * EPS


def test_isotropy_of_symmetric_points_and_their_conjugates() -> None:
    k = 8
    rng = np.random.default_rng(np.random.SeedSequence(15))
    for blocks, name in (([k], "S_k"), ([k - 1, 1], "S_{k-1} x S_1"), ([k - 3, 3], "S_{k-3} x S_3")):
        W = flip_start(blocks) if len(blocks) > 1 else np.eye(k)
        # A conjugate P_π W P_ρᵀ (independent π and ρ) has the conjugate group: same type.
        conjugate = W[rng.permutation(k)][:, rng.permutation(k)]
        for point in (W, conjugate):
            found = isotropy(point)
            assert found.name == name and found.blocks == tuple(sorted(blocks, reverse=True))
            assert found.diagonal
    assert isotropy(random_start(k, k, seed=3)).name == "trivial"
    assert isotropy(flip_start([k - 2, 2], d=k + 3)).name == "S_{k-2} x S_2 x S_{d-k}"
    # Equal rows: a permutation of rows alone fixes W (not diagonal).
    assert not isotropy(np.ones((3, 3))).diagonal


def test_isotropy_tolerance() -> None:
    W = flip_start([5, 1])
    broken = W.copy()
    broken[0, 0] += 1e-3  # a symmetry-breaking perturbation far above the tolerance
    assert isotropy(broken).name == "S_{k-2} x S_1 x S_1"
    assert isotropy(W + 1e-9 * np.eye(6)[::-1]).name == "S_{k-1} x S_1"  # 1e-9 < 1e-6: still symmetric


# --- critical points -----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [4, 5])
def test_flip_start_gives_a_saddle_below_six(k: int) -> None:
    V = standard_teacher(k)
    point = find_critical_point(flip_start([k - 1, 1]), V, fixed_space=fixed_space([k - 1, 1]))
    assert point.converged and point.gradient_norm <= 1e-12
    result = classify(point.W, V)
    assert result.kind == "saddle" and result.index > 0
    assert isotropy(point.W).name == "S_{k-1} x S_1"


def test_type_a_family_are_spurious_minima(type_a: dict[int, tuple[CriticalPoint, np.ndarray]]) -> None:
    for k, (point, values) in type_a.items():
        V = standard_teacher(k)
        assert point.converged and point.gradient_norm <= 1e-12, (k, point.gradient_norm, point.message)
        result = classify(point.W, V)
        assert result.kind == "spurious minimum", (k, result.kind, values[:3])
        assert result.nullity == 0
        assert isotropy(point.W).name == "S_{k-1} x S_1"
        # The point is in the five-parameter fixed space and is not a relabelled global minimum.
        assert np.abs(fixed_space([k - 1, 1]).project(point.W) - point.W).max() <= 10 * EPS
        assert point.loss > 1e-3


def test_type_a_multiplicities(type_a: dict[int, tuple[CriticalPoint, np.ndarray]]) -> None:
    # Isotypic decomposition of R^{k×k} under S_{k−1}: 5 copies of the trivial representation,
    # 5 of the standard one (dimension k − 2), one each of S^{(k−3,2)} and S^{(k−3,1,1)}.
    for k, (_, values) in type_a.items():
        clusters = _clusters(values)
        multiplicities = sorted(m for _, m in clusters)
        expected = sorted([1] * 5 + [k - 2] * 5 + [(k - 1) * (k - 4) // 2, (k - 2) * (k - 3) // 2])
        assert len(clusters) == 12, (k, clusters)
        assert multiplicities == expected, (k, multiplicities)


def test_type_a_growing_eigenvalues(type_a: dict[int, tuple[CriticalPoint, np.ndarray]]) -> None:
    ks = np.array(list(type_a))
    top = []
    for k, (_, values) in type_a.items():
        # A gap separates the d + 1 = k + 1 largest eigenvalues (≥ 0.87 for k ≥ 6) from the rest
        # (≤ 0.40): the growing part, of the size the md predicts.
        bounded, growing = values[: k * k - k - 1], values[k * k - k - 1 :]
        assert bounded.max() < 0.45 < growing.min(), (k, bounded.max(), growing.min())
        top.append(_clusters(growing))
    # The growing part is the smallest singleton, the (k − 2)-multiplet and two more singletons.
    slowest = np.array([clusters[0][0] for clusters in top])
    rest = np.array([[value for value, _ in clusters[1:]] for clusters in top])
    slopes = [np.polyfit(ks, slowest, 1)[0]] + [np.polyfit(ks, column, 1)[0] for column in rest.T]
    # Finite-k corrections: λ = s k + O(k^{1/2}) makes the fitted slope over 6 ≤ k ≤ 20 differ from s
    # by O(k^{-1/2})/2 relative; measured within 0.011 of 1/2π (one) and 1/4 (the others).
    assert slopes[0] == pytest.approx(GAMMA, abs=0.02)
    assert slopes[1:] == pytest.approx([0.25] * 3, abs=0.02)


def test_type_a_bounded_eigenvalues_approach_the_constants(
    type_a: dict[int, tuple[CriticalPoint, np.ndarray]],
) -> None:
    ks = np.array(list(type_a))
    rms = []
    for k, (_, values) in type_a.items():
        distance = _distance_to_constants(values[: k * k - k - 1])
        # Every bounded eigenvalue lies within 0.1 of 1/4 − 1/2π, 1/4 or 1/4 + 1/2π (at most 0.086,
        # at k = 6) and none is near 0 (the smallest is ≥ 0.0047, at k = 6).
        assert distance.max() < 0.1 and values[0] > 0.0
        rms.append(np.sqrt(np.mean(distance**2)))
    # The md's claim (a): O(k^{-1/2}).  Measured exponent of the RMS distance: −0.92 over 6 ≤ k ≤ 20
    # (the O(k²)-fold eigenvalues approach like 1/k; a few O(k)-fold ones more slowly).
    exponent = _fit_exponent(ks, np.array(rms))
    assert -1.3 < exponent < -0.45, exponent


def test_spurious_and_global_spectra_coincide(type_a: dict[int, tuple[CriticalPoint, np.ndarray]]) -> None:
    # The md's claim (c): the sorted spectra at the type-A and the global minimum agree to O(k^{-1/2}).
    ks = np.array(list(type_a))
    mean_gap = [np.abs(values - global_minimum_spectrum(k)).mean() for k, (_, values) in type_a.items()]
    exponent = _fit_exponent(ks, np.array(mean_gap))
    assert -1.3 < exponent < -0.45, exponent  # measured −0.95


@pytest.mark.parametrize("p", [2, 3, 4])
def test_other_families_at_k_20(p: int) -> None:
    k = 20
    V = standard_teacher(k)
    point = find_critical_point(flip_start([k - p, p]), V, fixed_space=fixed_space([k - p, p]))
    assert point.converged
    result = classify(point.W, V)
    assert result.kind == "spurious minimum"
    assert isotropy(point.W).name == f"S_{{k-{p}}} x S_{p}"
    # More distinct eigenvalues than type A (S_p acts on a block too), far fewer than k²: each
    # distinct value is a whole isotypic block.
    assert 12 < len(_clusters(result.eigenvalues)) < 40


def test_type_a_with_extra_inputs() -> None:
    # d > k: the family persists with zero extra columns (the reflections x_l ↦ −x_l of the extra
    # inputs fix it), with the same loss as at d = k.
    k, d = 8, 11
    V = standard_teacher(k, d)
    point = find_critical_point(flip_start([k - 1, 1], d), V, fixed_space=fixed_space([k - 1, 1], d))
    square = find_critical_point(
        flip_start([k - 1, 1]), standard_teacher(k), fixed_space=fixed_space([k - 1, 1])
    )
    assert point.converged and np.abs(point.W[:, k:]).max() <= 1e-12
    assert point.loss == pytest.approx(square.loss, abs=1e-12)  # loss rounding ≈ k²ε
    assert classify(point.W, V).kind == "spurious minimum"
    assert isotropy(point.W).name == "S_{k-1} x S_1 x S_{d-k}"


def test_non_convergence_is_flagged() -> None:
    V = standard_teacher(6)
    point = find_critical_point(random_start(6, 6, seed=1), V, max_iterations=2, newton_steps=0)
    assert not point.converged
    assert point.gradient_norm > 1e-12 and "left gradient norm" in point.message


def test_random_start_is_keyed() -> None:
    assert np.array_equal(random_start(5, 7, (3, 1)), random_start(5, 7, (3, 1)))
    assert not np.array_equal(random_start(5, 7, (3, 1)), random_start(5, 7, (3, 2)))


def test_module_namespace() -> None:
    assert pipeline.relu.loss is loss
    assert set(pipeline.relu.__all__) >= {"loss", "gradient", "hessian", "find_critical_point"}


@pytest.mark.slow
def test_random_starts_find_spurious_minima(type_a: dict[int, tuple[CriticalPoint, np.ndarray]]) -> None:
    # Measured with 50 starts per k (seed 2026): spurious fraction 2% at k = 6, 32% at 10, 82% at 14,
    # 100% at 20.  Here 12 starts at k = 8 and k = 20.
    fractions = {}
    for k in (8, 20):
        V = standard_teacher(k)
        found = survey(V, 12, seed=2026)
        spurious = 0
        for point, result, group in zip(found.points, found.classifications, found.isotropies, strict=True):
            assert point.converged, point.message
            assert result.index == 0  # descent ends at minima
            if result.kind == "spurious minimum":
                spurious += 1
                # Each is a member of a two-block family (S_{k-p} x S_p), never without symmetry.
                assert len(group.blocks) == 2 and group.diagonal, group.name
                if group.name == "S_{k-1} x S_1":
                    # A conjugate of the fixed-space point: same loss and spectrum.
                    family_point, family_values = type_a[k]
                    assert point.loss == pytest.approx(family_point.loss, abs=1e-12)
                    np.testing.assert_allclose(result.eigenvalues, family_values, rtol=0, atol=1e-9)
        fractions[k] = spurious / 12
    assert fractions[20] > fractions[8]
