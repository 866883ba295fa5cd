"""The sweep catalogue (``sweeps/*.yaml``): every file parses, is small, and shows what it claims.

Each sweep's header comment states a qualitative result of Liao & Mahoney (NeurIPS 2021) on its grid
(a spike absent then present, a support bounded or not, one bulk or two).  The checks below solve the
theory at two to four of the sweep's own grid points and assert that claim, so that a sweep edited
until it no longer shows its result fails here.  Points are named by their grid values and looked up
in the sweep: a value taken off the grid fails the check too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import takewhile
from pathlib import Path

import numpy as np
import pytest

from pipeline import theory
from pipeline.sweep import SweepSpec, load_sweep
from pipeline.theory import TheoryResult

SWEEPS = Path(__file__).parents[1] / "sweeps"
# The GLM family's sweeps are checked here; another family's, by its own tests
# (tests/test_family_<family>.py), against its own theory.
FAMILY = {path: load_sweep(path).family for path in SWEEPS.glob("*.yaml")}
CATALOGUE = sorted(path for path, family in FAMILY.items() if family == "glm" and path.stem != "quickstart")

# "Small": each sweep runs in minutes on 2 cores.  Measured with `hessweep run --workers 2` on a
# shared 2-core machine, the slowest of the catalogue (model_right: 5.7e11 flops of Monte Carlo,
# 40 theory solves) took 74 s; these limits leave about twice that.
MAX_MONTE_CARLO_FLOPS = 1.2e12
MAX_THEORY_SOLVES = 100
# Monte Carlo sizes the catalogue keeps to (large enough to see a spike, small enough for minutes).
P_RANGE = (200, 500)
TRIALS_RANGE = (4, 8)

# Sweeps of the matrix-free Monte Carlo at large p: minutes rather than seconds, a few draws, and
# the memory of one draw (X in float32) well inside a worker's share of 24 GB.
LARGE = {"large_p"}
LARGE_P_MIN = 10_000
LARGE_MAX_DRAWS = 4
LARGE_MAX_BYTES = 6e9

# Tolerances of the theory checks.  The closed forms (Corollary 1) are met to solver precision
# (~1e-8); the paper's quoted values (Corollary 2) have 3 significant digits.
CLOSED_FORM = 1e-6
PAPER_DIGITS = 1e-3
PAPER_ALIGNMENT = 0.01
# A spike "carries" a target when its cos² with it exceeds this: far above rounding (a spike of
# another direction has 0), far below the alignments claimed in the headers (0.08 and more).
CARRIES = 0.05


def solve(spec: SweepSpec, c: float, loss: str, signal: float) -> TheoryResult:
    """The theory at a grid point of ``spec``, given by its values (which must be on the grid)."""
    for axis, value in (("c", c), ("loss", loss), ("signal", signal)):
        assert value in getattr(spec.grid, axis), f"{spec.name}: {axis} = {value!r} is not on the grid"
    point = (spec.grid.c.index(c), spec.grid.loss.index(loss), spec.grid.signal.index(signal))
    return theory.solve(spec.scenario(*point), points=spec.theory.points)


def right_spikes(result: TheoryResult, target: str) -> np.ndarray:
    """cos² with ``target`` of the spikes beyond the right edge."""
    return result.spike_align[target][result.spikes > result.edge_right]


def left_spikes(result: TheoryResult, target: str) -> np.ndarray:
    """cos² with ``target`` of the spikes below the left edge."""
    return result.spike_align[target][result.spikes < result.edge_left]


def marchenko_pastur_quantiles(c: float, probabilities: list[float]) -> np.ndarray:
    """Quantiles of the Marchenko–Pastur law of ratio ``c <= 1`` (unit scale)."""
    low, high = (1 - math.sqrt(c)) ** 2, (1 + math.sqrt(c)) ** 2
    # x = low + (high − low)(1 − cos θ)/2 turns the square-root ends into smooth ones.
    theta = np.linspace(0.0, math.pi, 4097)
    x = low + (high - low) * (1 - np.cos(theta)) / 2
    density = np.sqrt(np.maximum((high - x) * (x - low), 0.0)) / (2 * math.pi * c * x)
    integrand = density * (high - low) * np.sin(theta) / 2
    cumulative = np.concatenate([[0.0], np.cumsum((integrand[1:] + integrand[:-1]) / 2 * np.diff(theta))])
    return np.interp(probabilities, cumulative / cumulative[-1], x)


def shape_ratio(quantiles: np.ndarray) -> float:
    """``(q99 − q50) / (q50 − q1)``: the skew of a law, unchanged by a shift and a scale."""
    q01, q50, q99 = quantiles
    return float((q99 - q50) / (q50 - q01))


SHAPE_PROBABILITIES = [0.01, 0.5, 0.99]


# ----------------------------------------------------------------------------------------------
# Every file
# ----------------------------------------------------------------------------------------------


def test_the_catalogue_is_there() -> None:
    assert {path.stem for path in CATALOGUE} == set(CHECKS)


def test_every_sweep_of_another_family_is_checked_by_its_family_tests() -> None:
    others = {path: family for path, family in FAMILY.items() if family != "glm"}
    assert others, "the catalogue has sweeps of the other families"
    for path, family in others.items():
        tests = (Path(__file__).parent / f"test_family_{family}.py").read_text(encoding="utf-8")
        assert path.stem in tests, f"{path.name} is not checked by test_family_{family}.py"


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda path: path.stem)
def test_sweep_parses_and_is_small(path: Path) -> None:
    spec = load_sweep(path)
    assert spec.name == path.stem
    work = spec.work_estimate()
    assert work["theory_solves"] <= MAX_THEORY_SOLVES
    if spec.name in LARGE:
        assert spec.montecarlo.method == "lanczos" and spec.p >= LARGE_P_MIN
        assert work["monte_carlo_draws"] <= LARGE_MAX_DRAWS
        assert work["monte_carlo_bytes"] <= LARGE_MAX_BYTES
        return
    assert work["monte_carlo_flops"] <= MAX_MONTE_CARLO_FLOPS
    assert P_RANGE[0] <= spec.p <= P_RANGE[1]
    assert TRIALS_RANGE[0] <= spec.trials <= TRIALS_RANGE[1]


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda path: path.stem)
def test_sweep_header_says_what_it_shows(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = list(takewhile(lambda line: line.startswith("#"), lines))
    assert len(header) >= 5, "a header comment of a few lines, before any key"
    text = "\n".join(header)
    assert "fig" in text or "glm.md" in text, "which figure or part of the notes it follows"
    assert "Look at:" in text
    assert f"`hessweep run sweeps/{path.name} --workers 2`" in text
    assert "Run time: " in text and "RUNTIME" not in text


# ----------------------------------------------------------------------------------------------
# What each sweep shows
# ----------------------------------------------------------------------------------------------


def check_support(spec: SweepSpec) -> None:
    c_low, c_high = spec.grid.c[0], spec.grid.c[-1]
    first, strongest = spec.grid.signal[1], spec.grid.signal[-1]
    # Exponential loss at w = 0: g ≡ 1, a Marchenko–Pastur bulk; at any ‖w‖ > 0, unbounded.
    at_zero = solve(spec, c_low, "exponential", 0.0)
    assert at_zero.edge_right == pytest.approx((1 + math.sqrt(c_low)) ** 2, rel=CLOSED_FORM)
    for c, signal in ((c_low, first), (c_high, strongest)):
        result = solve(spec, c, "exponential", signal)
        assert result.converged
        assert result.edge_right == math.inf and not result.spikes_defined
    # Logistic loss: g ≤ 1/4 bounds the bulk by (1/4)(1 + √c)² at every ‖w‖.
    bounded = solve(spec, c_high, "logistic", strongest)
    assert bounded.spikes_defined and bounded.edge_right <= (1 + math.sqrt(c_high)) ** 2 / 4


def check_bulks(spec: SweepSpec) -> None:
    def bulks(c: float, t: float) -> int:
        return len(solve(spec, c, "logistic", t).edges)

    # Figure 2c/2d: one bulk at t = 2, two at t = 4 (c ≈ 0.13); the split needs a larger t at a
    # larger c, where the bulks are wider.
    assert (bulks(0.125, 2.0), bulks(0.125, 4.0)) == (1, 2)
    assert (bulks(0.5, 4.0), bulks(0.5, spec.grid.signal[-1])) == (1, 2)


def check_mp_like(spec: SweepSpec) -> None:
    c = spec.grid.c[0]
    mp = shape_ratio(marchenko_pastur_quantiles(c, SHAPE_PROBABILITIES))

    def shape(loss: str, w: float) -> tuple[float, TheoryResult]:
        result = solve(spec, c, loss, w)
        quantiles = np.interp(SHAPE_PROBABILITIES, result.cdf(result.x), result.x)
        return shape_ratio(quantiles) / mp, result

    # ‖w‖ = 0: exactly MP (up to the quantiles' interpolation on the density grid).
    assert shape("exponential", 0.0)[0] == pytest.approx(1.0, abs=0.01)
    # Figure 3 (‖w‖ = 1): the logistic loss stays within 5% of the MP shape (3% in fact); the
    # exponential loss has a heavy right tail (an unbounded support, twice MP's skew and more).
    logistic, _ = shape("logistic", 1.0)
    exponential, result = shape("exponential", 1.0)
    assert logistic == pytest.approx(1.0, abs=0.05)
    assert exponential > 2.0 and result.edge_right == math.inf


def check_feature_bbp(spec: SweepSpec) -> None:
    # The grid brackets every threshold ‖μ‖ = c^{1/4} with at least two points on either side.
    signal = np.array(spec.grid.signal)
    for c in spec.grid.c:
        threshold = c**0.25
        assert (signal < threshold).sum() >= 2 and (signal > threshold).sum() >= 2
        assert np.abs(signal - threshold).min() > 0.02, "a grid point sits on the threshold"
    # Corollary 1 at c = 0.25 (figure 4): no spike at ‖μ‖ = 0.6 < 0.707; at ‖μ‖ = 0.8, a right
    # spike at g (1 + ρ)(1 + c/ρ) with cos² (ρ² − c)/(ρ² + cρ), for both losses (g = 1/4 and 1).
    c = 0.25
    for loss, g in (("logistic", 0.25), ("square", 1.0)):
        assert solve(spec, c, loss, 0.6).spikes.size == 0
        result = solve(spec, c, loss, 0.8)
        rho = 0.8**2
        assert result.spikes == pytest.approx([g * (1 + rho) * (1 + c / rho)], rel=CLOSED_FORM)
        assert result.spike_align["mu"] == pytest.approx([(rho**2 - c) / (rho**2 + c * rho)], abs=CLOSED_FORM)


def check_model_left(spec: SweepSpec) -> None:
    # Corollary 2 at c = 0.1: no spike below ‖w‖ ≈ 1.26; at ‖w‖ = 2, a left spike at 0.0521 (edge
    # 0.0642) with cos² 0.852 with w.  None at c = 0.5, even at the largest ‖w‖.
    assert solve(spec, 0.1, "logistic", 1.15).spikes.size == 0
    result = solve(spec, 0.1, "logistic", 2.0)
    assert result.spikes == pytest.approx([0.0521], abs=PAPER_DIGITS)
    assert result.edge_left == pytest.approx(0.0642, abs=PAPER_DIGITS)
    assert left_spikes(result, "w") == pytest.approx([0.852], abs=PAPER_ALIGNMENT)
    assert solve(spec, 0.5, "logistic", spec.grid.signal[-1]).spikes.size == 0


def check_model_right(spec: SweepSpec) -> None:
    # g = T(y), y = (w*ᵀx)², grows with |w*ᵀx|: as ‖w*‖ grows a spike carrying w* leaves the
    # RIGHT edge (none on the left), later at larger c.
    signal = spec.grid.signal
    for c, below, above in ((0.1, signal[0], signal[2]), (1.0, signal[2], signal[4])):
        assert right_spikes(solve(spec, c, "spectral", below), "w_star").size == 0
        past = solve(spec, c, "spectral", above)
        assert right_spikes(past, "w_star").size == 1 and right_spikes(past, "w_star")[0] > CARRIES
        assert left_spikes(past, "w_star").size == 0


def check_spectral_init(spec: SweepSpec) -> None:
    # Optimal preprocessing: H's LEFT spike carries w*, its cos² falling towards 0 as c → 2.
    alignments = []
    for c in (spec.grid.c[0], 0.75, spec.grid.c[-1]):
        result = solve(spec, c, "phase", 1.0)
        assert right_spikes(result, "w_star").size == 0
        aligned = left_spikes(result, "w_star")
        assert aligned.size == 1, f"c = {c}: {aligned.size} left spikes, not 1"
        alignments.append(aligned[0])
    assert alignments[0] > 0.8 and alignments[-1] < 0.02
    assert alignments == sorted(alignments, reverse=True)


def check_spectral_init_trim(spec: SweepSpec) -> None:
    # Trimmed labels: H's left spike carries w* at small c, its cos² falls to 0 by c = 0.7–0.75,
    # and it is gone well before c = 1.
    alignments = []
    for c in (spec.grid.c[0], 0.5, 0.7):
        aligned = left_spikes(solve(spec, c, "phase", 1.0), "w_star")
        assert aligned.size == 1, f"c = {c}: {aligned.size} left spikes, not 1"
        alignments.append(aligned[0])
    assert alignments[0] > 0.5 and alignments[-1] < 0.05
    assert alignments == sorted(alignments, reverse=True)
    assert solve(spec, spec.grid.c[-1], "phase", 1.0).spikes.size == 0


def check_large_p(spec: SweepSpec) -> None:
    # Corollary 1 with g ≡ 1: no spike below ‖μ‖ = c^{1/4}, then the closed form.
    c = spec.grid.c[0]
    assert spec.grid.signal[0] < c**0.25 < spec.grid.signal[1]
    assert right_spikes(solve(spec, c, "square", spec.grid.signal[0]), "mu").size == 0
    for norm in spec.grid.signal[1:]:
        result = solve(spec, c, "square", norm)
        rho = norm**2
        assert result.spikes[-1] == pytest.approx((1 + rho) * (1 + c / rho), rel=CLOSED_FORM)
        assert right_spikes(result, "mu")[-1] == pytest.approx(
            (rho**2 - c) / (rho**2 + c * rho), abs=CLOSED_FORM
        )


CHECKS: dict[str, Callable[[SweepSpec], None]] = {
    "large_p": check_large_p,
    "support": check_support,
    "bulks": check_bulks,
    "mp_like": check_mp_like,
    "feature_bbp": check_feature_bbp,
    "model_left": check_model_left,
    "model_right": check_model_right,
    "spectral_init": check_spectral_init,
    "spectral_init_trim": check_spectral_init_trim,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_sweep_shows_its_result(name: str) -> None:
    CHECKS[name](load_sweep(SWEEPS / f"{name}.yaml"))
