"""Tests of pipeline.pb: the Pennington–Bahri theory against closed forms, limits and Monte Carlo."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import pipeline.pb
from pipeline.errors import ScenarioError
from pipeline.pb import PBSample, PBTheory, critical_energy, sample, solve
from pipeline.pb.theory import _edge_crossing_energy

# Parameter points of both regimes: φ < 1 (no atom, ε_c > 0) and φ > 1 (atom of H₀, ε_c = 0),
# each below and above ε_c where it exists, a two-bulk case (the spread atom near 0 beside the
# Marchenko–Pastur bulk) and, for the product model, three bulks around a surviving atom.
POINTS = [
    ("wigner", 0.25, 0.01),
    ("wigner", 0.5, 0.05),
    ("wigner", 0.9, 0.5),
    ("wigner", 2.0, 0.01),
    ("wigner", 4.0, 0.05),
    ("product", 0.5, 0.05),
    ("product", 0.5, 0.3),
    ("product", 1.5, 0.1),
    ("product", 4.0, 0.05),
]


def _mp_density(x: np.ndarray, phi: float, sigma: float) -> np.ndarray:
    """The Marchenko–Pastur density of ratio φ and mean σ (continuous part)."""
    a, b = sigma * (1 - math.sqrt(phi)) ** 2, sigma * (1 + math.sqrt(phi)) ** 2
    return np.sqrt(np.maximum((b - x) * (x - a), 0.0)) / (2 * np.pi * sigma * phi * x)


def _printed_polynomial(model: str, phi: float, eps: float, z: np.ndarray) -> np.ndarray:
    """Coefficients (highest power first, one row per z) of eq. (18) or eq. (30) at σ = 1, as printed."""
    one = np.ones_like(z)
    if model == "wigner":
        columns = [2 * eps * phi * one, -(2 * eps + z * phi), z + phi - 1, -one]
    else:
        # 2 = 2(z − (1−φ))G − φ(2z + ε(1−φ))G² − εφ²(z + φ − 2)G³ + zεφ³G⁴, moved to one side.
        columns = [
            z * eps * phi**3,
            -eps * phi**2 * (z + phi - 2),
            -phi * (2 * z + eps * (1 - phi)),
            2 * (z - (1 - phi)),
            -2 * one,
        ]
    return np.stack(columns, axis=1)


def _roots(coefficients: np.ndarray) -> np.ndarray:
    """Roots of each row's polynomial (nonzero leading coefficient) by its companion matrix."""
    n, d = coefficients.shape[0], coefficients.shape[1] - 1
    companion = np.zeros((n, d, d), dtype=complex)
    companion[:, 1:, :-1] = np.eye(d - 1)
    companion[:, :, -1] = -coefficients[:, :0:-1] / coefficients[:, :1]
    return np.linalg.eigvals(companion)


def _continued_density(model: str, phi: float, eps: float, x: np.ndarray) -> np.ndarray:
    """ρ(x) by a branch choice independent of the solver's: follow the root ``G ≈ 1/z``.

    From ``z = x + 10³i`` (where exactly one root is near ``1/z``) down to ``z = x + 10⁻⁹i``,
    each step takes the root nearest the previous one; then ``ρ ≈ −Im G/π``.
    """
    current = 1.0 / (x + 1e3j)
    for eta in np.geomspace(1e3, 1e-9, 130):
        roots = _roots(_printed_polynomial(model, phi, eps, x + 1j * eta))
        current = roots[np.arange(x.size), np.argmin(np.abs(roots - current[:, None]), axis=1)]
    return -current.imag / np.pi


def _kolmogorov(theory: PBTheory, samples: list[PBSample]) -> float:
    """Kolmogorov distance between the theory CDF (atom included) and the pooled empirical CDF.

    Eigenvalues within a sample's zero tolerance are the exact zeros of a rank-deficient ``H``
    and are set to 0, so that they meet the theory's atom at 0 instead of straddling it.
    """
    values = np.sort(
        np.concatenate(
            [np.where(np.abs(s.eigenvalues) <= s.zero_tolerance, 0.0, s.eigenvalues) for s in samples]
        )
    )
    n = values.size
    after = np.searchsorted(values, values, side="right") / n
    before = np.searchsorted(values, values, side="left") / n
    return float(
        max(
            np.abs(after - theory.cdf(values)).max(),
            np.abs(before - theory.cdf(np.nextafter(values, -np.inf))).max(),
        )
    )


# ----------------------------------------------------------------------------------------------
# 1. Normalisation and moments
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "phi", "eps"), [*POINTS, ("wigner", 2.0, 0.0), ("product", 2.5, 0.0)])
def test_density_integrates_to_one_with_exact_moments(model: str, phi: float, eps: float) -> None:
    theory = solve(phi, eps, model)
    assert theory.converged, theory.note
    assert theory.x.size == 400 and np.all(np.diff(theory.x) >= 0)
    # The graded Gauss–Jacobi quadrature is exact to rounding on these smooth pieces.
    assert abs(theory.mass - 1.0) < 1e-12
    # An integration independent of that quadrature: trapezoids on the reported grid.  Their error
    # is O(h^{3/2}) at the square-root edges (h ~ 1e-5 of the bulk next to an edge at 400
    # Chebyshev points) and O(h²) inside: below 1e-3 in total.
    x, rho = theory.x, theory.density
    mass = np.trapezoid(rho, x) + theory.atom_zero
    assert abs(mass - 1.0) < 1e-3
    # Free cumulants add: mean σ (H₁ is traceless); variance σ²φ of H₀ plus that of H₁, 2ε
    # (semicircle) or εφ/2 (κ₂ of R-transform 28).  Same trapezoid error, scaled by the support.
    scale = max(abs(theory.edge_left), abs(theory.edge_right))
    assert abs(np.trapezoid(x * rho, x) - 1.0) < 1e-3 * scale
    variance = phi + (2 * eps if model == "wigner" else eps * phi / 2)
    second = np.trapezoid(x**2 * rho, x) - 1.0
    assert abs(second - variance) < 1e-3 * scale**2


def test_sigma_is_a_scale() -> None:
    # H at (φ, ε, σ) is σ × H at (φ, ε/σ², 1): the polynomials coincide after G → G/σ, z → σz, so
    # edges agree to rounding (relative 1e-13, a few ulps through Newton) and α to the quadrature.
    for model in pipeline.pb.MODELS:
        scaled, unit = solve(0.5, 0.2, model, sigma=3.0), solve(0.5, 0.2 / 9.0, model)
        np.testing.assert_allclose(scaled.edges, 3.0 * unit.edges, rtol=1e-13)
        assert abs(scaled.index - unit.index) < 1e-13
        assert critical_energy(0.5, model, sigma=3.0) == pytest.approx(
            9 * critical_energy(0.5, model), rel=1e-15
        )


# ----------------------------------------------------------------------------------------------
# 2. Theory against Monte Carlo
# ----------------------------------------------------------------------------------------------

MC_POINTS = [
    ("wigner", 0.5, 0.05),  # φ < 1, ε > ε_c = 0.0113: a negative part
    ("wigner", 2.0, 0.02),  # φ > 1: two bulks, the spread atom straddles 0
    ("product", 0.5, 0.3),  # φ < 1, ε > ε_c = 0.081
    ("product", 1.5, 0.1),  # 1 < φ < 2: no atom left
    ("product", 3.0, 0.2),  # φ > 2: an atom 1 − 2/φ survives between two bulks
]
MC_N = 1000
MC_TRIALS = 2


@pytest.mark.parametrize(("model", "phi", "eps"), MC_POINTS)
def test_theory_matches_monte_carlo(model: str, phi: float, eps: float) -> None:
    theory = solve(phi, eps, model)
    samples = [sample(phi, eps, MC_N, seed=(2017, trial), model=model) for trial in range(MC_TRIALS)]
    # The empirical spectral CDF of one matrix is within O(1/N) of the limit (plus edge
    # fluctuations of N^{-2/3} in position); 0.02 is the bound asked for, measured ~0.002.
    assert _kolmogorov(theory, samples) < 0.02
    # The count of eigenvalues below 0 fluctuates far less than a binomial count (eigenvalue
    # rigidity: variance O(log N)), so three binomial standard deviations of the pooled fraction
    # bound it, plus 2/N for the O(1) finite-N bias of a counting function.
    pooled = float(np.mean([s.index for s in samples]))
    alpha = theory.index
    bound = 3 * math.sqrt(alpha * (1 - alpha) / (MC_N * MC_TRIALS)) + 2 / MC_N
    assert alpha > 0.04
    assert abs(pooled - alpha) < bound
    # The atom: exact zeros number N − rank H = N − m − 2k (rank H₀ = m = round(N/φ), rank H₁ =
    # 2k, k = round(N/2φ)) = N(1 − 2/φ) up to the rounding of m and k in the product model at
    # φ > 2, none otherwise.
    assert abs(np.mean([s.zero_fraction for s in samples]) - theory.atom_zero) <= 2 / MC_N


def test_product_index_obeys_the_inertia_law() -> None:
    # H₀ ⪰ 0 cannot add negative eigenvalues (Weyl), and H₁ = [[0, H₁₂], [H₁₂ᵀ, 0]] has exactly
    # rank(H₁₂) = min(N/2, N/(2φ)) of them: α ≤ min(1/2, 1/(2φ)) whatever ε, to quadrature error.
    for phi in (0.5, 1.5, 3.0):
        for eps in (0.05, 1.0, 20.0):
            assert solve(phi, eps, "product").index <= min(0.5, 1 / (2 * phi)) + 1e-12
    # For φ ≥ 2 it is attained: H = F M Fᵀ with F = [A, Ê ⊕ 0, 0 ⊕ X̂] of full column rank
    # m + 2k ≤ N and M = diag(σ/m I_m, [[0, sI_k], [sI_k, 0]]), so by Sylvester's law of inertia H
    # has exactly k negative eigenvalues and N − m − 2k zeros: α = 1/(2φ), atom 1 − 2/φ.  The
    # sample shows it exactly at finite N; the theory to quadrature error (measured 6e-17).
    for phi, n in ((2.0, 200), (2.5, 200), (4.0, 160)):
        k, m = round(n / (2 * phi)), round(n / phi)
        for eps in (1e-3, 0.3, 30.0):
            drawn = sample(phi, eps, n, seed=(11, n), model="product")
            assert drawn.index == k / n and drawn.zero_fraction == (n - m - 2 * k) / n
            theory = solve(phi, eps, "product")
            assert abs(theory.index - 1 / (2 * phi)) < 1e-13
            assert theory.atom_zero == pytest.approx(1 - 2 / phi, abs=1e-15)


# ----------------------------------------------------------------------------------------------
# 3. Limits: Marchenko–Pastur at ε = 0, the semicircle as φ → 0
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", pipeline.pb.MODELS)
@pytest.mark.parametrize(("phi", "sigma"), [(0.3, 1.0), (0.5, 2.0), (1.0, 1.0), (2.5, 0.5)])
def test_marchenko_pastur_at_zero_energy(model: str, phi: float, sigma: float) -> None:
    theory = solve(phi, 0.0, model, sigma=sigma)
    assert theory.converged, theory.note
    a, b = sigma * (1 - math.sqrt(phi)) ** 2, sigma * (1 + math.sqrt(phi)) ** 2
    # Edges are critical values z(G*) (the Newton-polished double roots): ulps of the scale.
    np.testing.assert_allclose(theory.edges, [[a, b]], rtol=0, atol=1e-13 * b)
    assert theory.atom_zero == pytest.approx(max(0.0, 1 - 1 / phi), abs=1e-15)
    assert theory.index == 0.0
    # Inside the bulk (at the edges the closed form turns an ulp of the edge into √ulp ≈ 1e-8):
    # the companion matrices' roots are backward stable, ~1e-15 relative to the density.
    inside = (theory.x > theory.edge_left) & (theory.x < theory.edge_right)
    np.testing.assert_allclose(
        theory.density[inside], _mp_density(theory.x[inside], phi, sigma), rtol=1e-10, atol=1e-12
    )
    if phi == 1.0:
        # The hard edge at 0: ρ ~ x^{-1/2}, reported as inf at the grid point 0.
        assert theory.x[0] == 0.0 and theory.density[0] == np.inf


def test_semicircle_as_phi_vanishes() -> None:
    eps, v = 0.1, 0.2
    peak = 1 / (np.pi * math.sqrt(v))
    for phi in (1e-4, 1e-6):
        theory = solve(phi, eps)
        assert theory.converged, theory.note
        inner = np.abs(theory.x - 1.0) <= 0.9 * 2 * math.sqrt(v)
        x, rho = theory.x[inner], theory.density[inner]
        # H₀ → the identity: the semicircle of variance 2ε centred at 1.  Free cumulants add, so
        # the variance is 2ε + φ and the density moves by ~ (φ/2ε)·peak (measured 3.5 φ·peak away
        # from the edges): allow 10 φ·peak.
        semicircle = np.sqrt(4 * v - (x - 1) ** 2) / (2 * np.pi * v)
        assert np.abs(rho - semicircle).max() < 10 * phi * peak
        # With κ₂ = 2ε + φ the rest is κ₃ = φ², κ₄ = φ³, …: agreement to O(φ²) (measured 0.7 φ²).
        shifted = np.sqrt(4 * (v + phi) - (x - 1) ** 2) / (2 * np.pi * (v + phi))
        assert np.abs(rho - shifted).max() < 10 * phi**2 * peak + 1e-13
        radius = 2 * math.sqrt(v + phi)
        np.testing.assert_allclose(theory.edges, [[1 - radius, 1 + radius]], rtol=0, atol=10 * phi**2)


# ----------------------------------------------------------------------------------------------
# Branches, edges
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "phi", "eps"), [p for p in POINTS if p[1] > 1] + [("wigner", 0.5, 0.05)])
def test_density_is_the_physical_branch(model: str, phi: float, eps: float) -> None:
    theory = solve(phi, eps, model)
    scale = max(abs(theory.edge_left), abs(theory.edge_right))
    near_edge = np.min(np.abs(theory.x[:, None] - theory.edges.ravel()[None, :]), axis=1) < 1e-3 * scale
    pick = np.flatnonzero(~near_edge)[::6]
    # Gaps and the outside, where the density must vanish.
    outside = np.concatenate(
        [
            [theory.edge_left - 0.1 * scale, theory.edge_right + 0.1 * scale],
            0.5 * (theory.edges[1:, 0] + theory.edges[:-1, 1]),
        ]
    )
    outside = outside[np.abs(outside) > 1e-3]
    x = np.concatenate([theory.x[pick], outside])
    expected = np.concatenate([theory.density[pick], np.zeros(outside.size)])
    continued = _continued_density(model, phi, eps, x)
    # An atom at 0 adds its Lorentzian atom·η/(π(x² + η²)) at η = 1e-9.
    continued -= theory.atom_zero * 1e-9 / (np.pi * (x**2 + 1e-18))
    # At Im z = 1e-9 the continued G is off its boundary value by O(1e-9/dist²) away from the
    # edges (≥ 1e-3 here): 1e-6 of the peak is ample.
    np.testing.assert_allclose(
        continued, expected, rtol=0, atol=1e-6 * theory.density[np.isfinite(theory.density)].max()
    )


@pytest.mark.parametrize(("model", "phi", "eps"), POINTS)
def test_edges_are_double_roots_with_density_on_one_side(model: str, phi: float, eps: float) -> None:
    theory = solve(phi, eps, model)
    for edge in theory.edges.ravel():
        roots = np.roots(_printed_polynomial(model, phi, eps, np.array([edge]))[0])
        # A double root of eq. (18)/(30) in G: rounding of the coefficients splits it by
        # ~√ε_mach·|G| ≈ 1e-8|G| if the edge is exact, while an edge off by δ splits it by ~√δ:
        # 1e-6 relative means the edge is within ~1e-12 of the scale.
        gaps = np.where(np.eye(roots.size, dtype=bool), np.inf, np.abs(roots[:, None] - roots[None, :]))
        i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
        assert gaps[i, j] < 1e-6 * max(abs(roots[i]), 1.0)
    # A complex pair (density) on the inner side of every edge, all roots real on the outer side,
    # 1e-9 of the scale away: there the pair's Im G is ~3e-5·|G|, far above rounding.
    scale = max(abs(theory.edge_left), abs(theory.edge_right))
    step = 1e-9 * scale
    inner = np.concatenate([theory.edges[:, 0] + step, theory.edges[:, 1] - step])
    outer = np.concatenate([theory.edges[:, 0] - step, theory.edges[:, 1] + step])
    assert np.all(_printed_roots_imag(model, phi, eps, inner) > 0.0)
    assert np.all(_printed_roots_imag(model, phi, eps, outer) == 0.0)


@pytest.mark.parametrize("points", [16, 37, 400])
@pytest.mark.parametrize(
    ("model", "phi", "eps"), [("product", 4.0, 0.05), ("product", 2.0, 0.3), ("wigner", 2.0, 0.01)]
)
def test_grid_resolves_every_bulk(model: str, phi: float, eps: float, points: int) -> None:
    theory = solve(phi, eps, model, points=points)
    assert theory.x.size == points and np.all(np.diff(theory.x) > 0)
    assert np.all(np.isin(theory.edges, theory.x))
    at_edges = theory.density[np.isin(theory.x, theory.edges)]
    # 0 at square-root edges; inf at the hard edge 0 of the product model at φ = 2 exactly.
    assert np.all((at_edges == 0.0) | ((at_edges == np.inf) & (phi == 2.0) & (model == "product")))
    inside = ~np.isin(theory.x, theory.edges)
    assert np.all(theory.density[inside] > 0)
    assert theory.cdf(np.array([theory.edge_right]))[0] == pytest.approx(1.0, abs=1e-12)


def _printed_roots_imag(model: str, phi: float, eps: float, x: np.ndarray) -> np.ndarray:
    """Largest |Im G| over the roots of the printed polynomial at real x, in real arithmetic."""
    coefficients = _printed_polynomial(model, phi, eps, x).real
    n, d = coefficients.shape[0], coefficients.shape[1] - 1
    companion = np.zeros((n, d, d))
    companion[:, 1:, :-1] = np.eye(d - 1)
    companion[:, :, -1] = -coefficients[:, :0:-1] / coefficients[:, :1]
    return np.abs(np.linalg.eigvals(companion).imag).max(axis=1)


# ----------------------------------------------------------------------------------------------
# 4. Critical energy
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", pipeline.pb.MODELS)
def test_critical_energy_is_where_the_left_edge_crosses_zero(model: str) -> None:
    for phi in (0.05, 0.25, 0.5, 2 / 3, 0.9):
        closed = critical_energy(phi, model)
        # Brent's method on edge_left(ε) to 4 ulps; the edges are exact to ulps: agreement to 1e-9
        # leaves six orders of margin (measured ≤ 5e-16 relative).
        assert _edge_crossing_energy(phi, model) == pytest.approx(closed, rel=1e-9)
        below, above = solve(phi, closed * (1 - 1e-6), model), solve(phi, closed * (1 + 1e-6), model)
        assert below.index == 0.0 and below.edge_left > 0
        assert above.index > 0 and above.edge_left < 0


def test_critical_energy_closed_forms() -> None:
    # The printed (21) and (32), evaluated where they do not cancel (φ ≤ 0.7: terms ~30, result
    # ≥ 2e-3): the factored forms agree to rounding of the printed ones (~30 ε_mach / ε_c).
    for phi in (0.01, 0.1, 0.3, 0.5, 0.7):
        printed = (1 - 20 * phi - 8 * phi**2 + (1 + 8 * phi) ** 1.5) / 16
        assert critical_energy(phi) == pytest.approx(printed, rel=1e-11)
        chi = 1 + 16 * phi - 8 * phi**2
        printed = (27 - 18 * chi - chi**2 + 8 * chi**1.5) / (32 * phi * (1 - phi) ** 3)
        assert critical_energy(phi, "product") == pytest.approx(printed, rel=1e-11)
    # Near φ = 1: (2/27)(1 − φ)³ and (8/27)(1 − φ)³ with relative corrections O(1 − φ) (measured
    # (1 − φ)/3 and (1 − φ)): allow 2(1 − φ).
    for phi in (0.99, 0.999, 0.9999):
        assert critical_energy(phi) == pytest.approx(2 / 27 * (1 - phi) ** 3, rel=2 * (1 - phi))
        assert critical_energy(phi, "product") == pytest.approx(8 / 27 * (1 - phi) ** 3, rel=2 * (1 - phi))
    # φ ≥ 1: the kernel of H₀ makes any ε > 0 produce negative eigenvalues.
    for model in pipeline.pb.MODELS:
        for phi in (1.0, 1.5, 3.0):
            assert critical_energy(phi, model) == 0.0
            assert solve(phi, 1e-4, model).index > 0


# ----------------------------------------------------------------------------------------------
# 5. The small-index law
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", pipeline.pb.MODELS)
@pytest.mark.parametrize("phi", [0.25, 0.5, 2 / 3])
def test_small_index_exponent_is_three_halves(model: str, phi: float) -> None:
    epsilon_c = critical_energy(phi, model)
    distance = np.logspace(-4, -2, 7)
    alpha = np.array([solve(phi, epsilon_c * (1 + t), model).index for t in distance])
    # α reaches 2e-8 here: it must be accurate to far better than 1e-3 relative for the fit.
    assert np.all(alpha > 0)
    slope = np.polyfit(np.log(distance), np.log(alpha), 1)[0]
    # The pure power holds as t → 0; over (1e-4, 1e-2] the local slope runs 1.4999 → 1.495, so the
    # fit gives 1.4985 (measured): 0.02 is the tolerance asked for.
    assert abs(slope - 1.5) < 0.02
    # And it does tend to 3/2: the local slope at the small end is within 1e-3.
    assert abs(np.log(alpha[1] / alpha[0]) / np.log(distance[1] / distance[0]) - 1.5) < 1e-3


# ----------------------------------------------------------------------------------------------
# 6. Keyed randomness, scalings of the matrices
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", pipeline.pb.MODELS)
def test_sample_is_keyed(model: str) -> None:
    first = sample(0.5, 0.1, 60, seed=(3, 1), model=model)
    again = sample(0.5, 0.1, 60, seed=(3, 1), model=model)
    other = sample(0.5, 0.1, 60, seed=(3, 2), model=model)
    assert np.array_equal(first.eigenvalues, again.eigenvalues)
    assert not np.any(first.eigenvalues == other.eigenvalues)
    assert first.eigenvalues.shape == (60,) and np.all(np.diff(first.eigenvalues) >= 0)
    assert first.m == 120 and not first.eigenvalues.flags.writeable


@pytest.mark.parametrize("model", pipeline.pb.MODELS)
def test_sample_sigma_is_a_scale(model: str) -> None:
    # One seed draws the same normals: H(σ, ε) = σ H(1, ε/σ²) up to rounding (1e-12 of ‖H‖).
    scaled = sample(0.7, 0.3, 51, seed=9, model=model, sigma=2.0).eigenvalues
    unit = sample(0.7, 0.3 / 4.0, 51, seed=9, model=model).eigenvalues
    np.testing.assert_allclose(scaled, 2.0 * unit, rtol=0, atol=1e-12 * np.abs(scaled).max())


def test_sample_moments_match_the_laws() -> None:
    # Exact finite-N expectations of the construction: E tr H/N = σ, and E tr H₁²/N = 2ε
    # (GOE: (N − 1)·2ε/N off the diagonal + 4ε/N on it) or 2·n₁n₂k·2ε/(4k²N) (product).  Their
    # standard errors over these draws are below 1% of each value; allow 5%.
    n, phi, eps = 200, 0.5, 0.3
    k = round(n / (2 * phi))
    for model, h1_variance in (
        ("wigner", 2 * eps * (1 + 1 / n)),
        ("product", eps * (n // 2) * (n - n // 2) / (k * n)),
    ):
        draws = [sample(phi, eps, n, seed=(5, t), model=model).eigenvalues for t in range(20)]
        zero = [sample(phi, 0.0, n, seed=(5, t), model=model).eigenvalues for t in range(20)]
        assert np.mean([d.mean() for d in draws]) == pytest.approx(1.0, rel=0.05)
        # tr H² = tr H₀² + 2 tr H₀H₁ + tr H₁²; H₀ is the same draw at ε = 0 and tr H₀H₁ has mean 0.
        excess = np.mean([(d**2).mean() - (z**2).mean() for d, z in zip(draws, zero, strict=True)])
        assert excess == pytest.approx(h1_variance, rel=0.05)


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: solve(0.0, 0.1), "phi"),
        (lambda: solve(-1.0, 0.1), "phi"),
        (lambda: solve(float("nan"), 0.1), "phi"),
        (lambda: solve(float("inf"), 0.1), "phi"),
        (lambda: solve("half", 0.1), "phi"),
        (lambda: solve(0.5, -1e-3), "eps"),
        (lambda: solve(0.5, float("nan")), "eps"),
        (lambda: solve(0.5, 0.1, "gaussian"), "model"),
        (lambda: solve(0.5, 0.1, sigma=0.0), "sigma"),
        (lambda: solve(0.5, 0.1, sigma=float("inf")), "sigma"),
        (lambda: solve(0.5, 0.1, points=8), "points"),
        (lambda: critical_energy(0.0), "phi"),
        (lambda: critical_energy(0.5, "product", sigma=-1.0), "sigma"),
        (lambda: sample(0.5, 0.1, 1, seed=0), "N"),
        (lambda: sample(0.5, 0.1, 10.0, seed=0), "N"),
        (lambda: sample(1e6, 0.1, 10, seed=0), "N"),
        (lambda: sample(0.5, 0.1, 10, seed=None), "seed"),
        (lambda: sample(0.5, 0.1, 10, seed=-1), "seed"),
        (lambda: sample(0.5, float("-inf"), 10, seed=0), "eps"),
        (lambda: sample(0.5, 0.1, 10, seed=0, model="goe"), "model"),
    ],
)
def test_bad_arguments_name_the_argument(call: Callable[[], object], field: str) -> None:
    with pytest.raises(ScenarioError) as error:
        call()
    assert error.value.field == field
