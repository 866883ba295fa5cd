"""Theory against Monte Carlo at sizes where they must agree.

Tolerances and why:

* Kolmogorov distance < 0.02 (the issue's bound) between the limiting law and the eigenvalues of
  ``TRIALS`` pooled draws at ``p = 800``.  The empirical spectral law fluctuates at order
  ``1/√n`` through the empirical law of the curvatures g_i (a linear statistic, not a rigid one):
  about 0.015 for one draw at n = 1600, 0.008 for four pooled.  The measured distances are 0.003
  to 0.015.
* Isolated eigenvalues: Monte Carlo mean over the trials within ``SPIKE_RELATIVE`` of the limit.
  An outlier fluctuates at order ``p^{-1/2}`` (about 3% at p = 800, 1.5% for a mean of four) and
  has a bias of the same order.
* Alignments (squared cosines): within ``ALIGN_ABSOLUTE``, again ``O(p^{-1/2})`` fluctuations.
* Mass ``∫ density + atom`` within ``MASS_TOLERANCE`` of 1: the integration error of the density
  grid (~5e-5 at square-root edges) and the quadrature error of the law of g (below 1e-5 of δ);
  measured below 1e-4 on the points of the spectral-initialisation sweeps at p > n.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import Scenario, montecarlo, theory

P = 800
TRIALS = 4
KS_BOUND = 0.02
SPIKE_RELATIVE = 0.03
ALIGN_ABSOLUTE = 0.05
MASS_TOLERANCE = 1e-3

pytestmark = pytest.mark.slow


def draws(scenario: Scenario, p: int = P, trials: int = TRIALS) -> list[montecarlo.MonteCarloResult]:
    return [montecarlo.sample(scenario, p, (20261123, trial)) for trial in range(trials)]


def kolmogorov(result: theory.TheoryResult, eigenvalues: np.ndarray) -> float:
    """sup |F − F_n| over the line, with the left limits at each jump (ties and atoms included)."""
    values = np.sort(eigenvalues)
    # For p > n the p − n exact zeros come out of the eigensolver as ±1e-15: they are the atom
    # at 0 of the limit.
    values[np.abs(values) < 1e-9 * np.abs(values).max()] = 0.0
    points = np.unique(values)
    below = np.searchsorted(values, points, side="left") / values.size
    up_to = np.searchsorted(values, points, side="right") / values.size
    limit = result.cdf(points)
    limit_below = result.cdf(np.nextafter(points, -np.inf))
    return float(max(np.max(np.abs(limit - up_to)), np.max(np.abs(limit_below - below))))


CASES = {
    "logistic/logistic": Scenario(0.5, w_star={"norm": 1.0}),
    "logistic/exponential": Scenario(0.5, loss="exponential", w_star={"norm": 1.0}),
    # A heavy log-normal tail (σ = 3): the mean of g is e^4.5 ≈ 90 times its median.
    "logistic/exponential at ‖w‖ = 3": Scenario(
        0.5, loss="exponential", w_star={"norm": 0.0}, w={"norm": 3.0}
    ),
    # p = n: a hard edge at 0, where the density diverges like |x|^(-1/2).
    "logistic/logistic at c = 1": Scenario(1.0),
    # p = 2n: half the spectrum is an atom at 0.
    "logistic/exponential at c = 2": Scenario(2.0, loss="exponential"),
    # Spectral initialisation at p = n: g takes both signs and the density diverges at 0 inside
    # the bulk.
    "phase retrieval, optimal labels, c = 1": Scenario(
        1.0, model="phase", loss="phase", w="zero", labels="optimal"
    ),
    # Figure 1c: phase retrieval, heavy tails on both sides.
    "phase/phase": Scenario(
        800 / 6000, model="phase", loss="phase", w_star={"norm": 2.0}, w={"norm": 1.0, "angle": 90}
    ),
    # Figure 2d: two covariance blocks, two bulks.
    "two-block covariance": Scenario(
        800 / 6000,
        w_star={"norm": 0.0},
        mu={"norm": 1.0, "spread": True},
        w={"norm": 1.0, "spread": True},
        cov={"eigenvalues": [1, 4], "weights": [0.5, 0.5]},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_limiting_law_matches_monte_carlo(name: str) -> None:
    scenario = CASES[name]
    limit = theory.solve(scenario)
    eigenvalues = np.concatenate([d.eigenvalues for d in draws(scenario)])
    assert limit.converged
    assert kolmogorov(limit, eigenvalues) < KS_BOUND


def test_negative_fraction_in_phase_retrieval() -> None:
    # The paper's ≈ 61% (figure 1c) is one p = 800 histogram; the limit is 0.628.
    scenario = CASES["phase/phase"]
    limit = theory.solve(scenario)
    fractions = [d.negative_fraction for d in draws(scenario)]
    assert np.mean(fractions) == pytest.approx(limit.negative_fraction, abs=0.02)


def test_two_bulks_have_an_empty_gap_in_monte_carlo() -> None:
    scenario = CASES["two-block covariance"]
    limit = theory.solve(scenario)
    (_, first_end), (second_start, _) = limit.edges
    for d in draws(scenario):
        # Only the predicted spikes (at most one per draw here) may sit in the gap, away from
        # the edges by more than the O(p^{-2/3}) edge fluctuations.
        margin = 0.1 * (second_start - first_end)
        inside = (d.eigenvalues > first_end + margin) & (d.eigenvalues < second_start - margin)
        assert inside.sum() <= limit.spikes.size


def assert_spike_matches(limit: float, observed: list[float]) -> None:
    assert np.mean(observed) == pytest.approx(limit, rel=SPIKE_RELATIVE)


def test_corollary_1_right_spike_against_monte_carlo() -> None:
    scenario = Scenario(0.5, w_star={"norm": 0.0}, w="zero", mu={"norm": np.sqrt(2.0)})
    limit = theory.solve(scenario)
    results = draws(scenario)
    assert_spike_matches(limit.spikes[-1], [d.eigenvalues[-1] for d in results])
    observed = np.mean([d.align_top["mu"][0] for d in results])
    assert observed == pytest.approx(limit.spike_align["mu"][-1], abs=ALIGN_ABSOLUTE)


def test_corollary_2_left_spike_against_monte_carlo() -> None:
    # Figure 5: c = 0.1 (n = 8000 at p = 800), ‖w‖ = 2, μ = w* = 0.
    scenario = Scenario(0.1, w_star={"norm": 0.0}, w={"norm": 2.0})
    limit = theory.solve(scenario)
    results = draws(scenario)
    assert_spike_matches(limit.spikes[0], [d.eigenvalues[0] for d in results])
    observed = np.mean([d.align_bottom["w"][0] for d in results])
    assert observed == pytest.approx(limit.spike_align["w"][0], abs=ALIGN_ABSOLUTE)


def test_spikes_from_mu_and_w_at_once_against_monte_carlo() -> None:
    scenario = Scenario(0.1, w={"norm": 3.0}, mu={"norm": 2.0, "angle": 90})
    limit = theory.solve(scenario)
    results = draws(scenario)
    assert_spike_matches(limit.spikes[0], [d.eigenvalues[0] for d in results])
    assert_spike_matches(limit.spikes[1], [d.eigenvalues[-1] for d in results])
    bottom = np.mean([d.align_bottom["w"][0] for d in results])
    top = np.mean([d.align_top["mu"][0] for d in results])
    assert bottom == pytest.approx(limit.spike_align["w"][0], abs=ALIGN_ABSOLUTE)
    assert top == pytest.approx(limit.spike_align["mu"][1], abs=ALIGN_ABSOLUTE)


@pytest.mark.parametrize("labels", [{"name": "trim", "threshold": 3.0}, "optimal"])
def test_spectral_initialisation_spike_against_monte_carlo(labels: object) -> None:
    # Phase retrieval at w = 0: H = −(1/n) Σ T(y_i) x_i x_iᵀ, whose bottom eigenvector is the
    # spectral estimate of w*.  p = 1000 because this spike converges slowly (3.3% low at
    # p = 800, 1.4% at p = 2000 for the optimal T at c = 0.2): SPIKE_RELATIVE doubled here.
    scenario = Scenario(0.2, model="phase", loss="phase", w="zero", labels=labels)
    limit = theory.solve(scenario)
    results = draws(scenario, p=1000)
    assert np.mean([d.eigenvalues[0] for d in results]) == pytest.approx(
        limit.spikes[0], rel=2 * SPIKE_RELATIVE
    )
    observed = np.mean([d.align_bottom["w_star"][0] for d in results])
    assert observed == pytest.approx(limit.spike_align["w_star"][0], abs=ALIGN_ABSOLUTE)


def test_spectral_loss_right_spike_against_monte_carlo() -> None:
    # The spectral loss ℓ = T(y) h²/2: H = (1/n) Σ T(y_i) x_i x_iᵀ itself, whose TOP eigenvector
    # is the spectral estimate of w* (sweeps/model_right.yaml).  p = 1000 as above.
    scenario = Scenario(0.5, model="phase", loss="spectral", w="zero", labels="optimal")
    limit = theory.solve(scenario)
    results = draws(scenario, p=1000)
    assert np.mean([d.eigenvalues[-1] for d in results]) == pytest.approx(
        limit.spikes[-1], rel=2 * SPIKE_RELATIVE
    )
    observed = np.mean([d.align_top["w_star"][0] for d in results])
    assert observed == pytest.approx(limit.spike_align["w_star"][-1], abs=ALIGN_ABSOLUTE)


# p > n with a curvature of both signs and mass near g = 0 (sweeps/spectral_init.yaml and
# sweeps/model_right.yaml at c = 1.5): next to the atom at 0 the pole of g/(1+gδ) closes in on the
# real axis, where the nodes of the quadrature of g had spurious roots; solve returned
# converged=False with masses 1.111 and 1.113 and Kolmogorov distances 0.114 and 0.114 (all of
# the error on (0, 0.08)).  p = 2000 (n = 1333), four draws pooled: measured 0.008 and 0.007 here,
# 0.002 to 0.004 with other seeds over the eleven points of the two sweeps at c > 1.
SPECTRAL_INITIALISATION_ABOVE_ONE = {
    "phase loss, w = 0 (spectral_init, c = 1.5)": Scenario(
        1.5, model="phase", loss="phase", w="zero", labels="optimal"
    ),
    "spectral loss, ‖w*‖ = 1.4 (model_right, c = 1.5)": Scenario(
        1.5, model="phase", loss="spectral", w="zero", w_star={"norm": 1.4}, labels="optimal"
    ),
}


@pytest.mark.parametrize("name", SPECTRAL_INITIALISATION_ABOVE_ONE)
def test_density_next_to_the_atom_at_zero_above_ratio_one(name: str) -> None:
    scenario = SPECTRAL_INITIALISATION_ABOVE_ONE[name]
    limit = theory.solve(scenario)
    assert limit.converged
    assert limit.mass == pytest.approx(1.0, abs=MASS_TOLERANCE)
    assert limit.atom_zero == pytest.approx(1.0 - 1.0 / scenario.c)
    eigenvalues = np.concatenate([d.eigenvalues for d in draws(scenario, p=2000)])
    assert kolmogorov(limit, eigenvalues) < KS_BOUND
