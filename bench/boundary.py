"""Benchmark of the theory's phase-boundary search (what :func:`pipeline.analysis.phase_boundary`
does per ``c``): the root of ``det G`` at the edge against bisection on :func:`theory.solve`.

Both start from the same grid bracket (one grid step, 0.25, around the transition) and stop at the
same tolerance (1e-6 of the bracket); the reference is what one would write without
:func:`pipeline.theory.spike_margin`: bisect on "does ``solve`` report a spike on that side", each
step a full solve.  Reported: seconds (median of the repeats, one core), solver calls, and the
error against the closed form where there is one (square loss: ``‖μ‖ = c^{1/4}``).

Usage (from the repository root; one BLAS thread, set before numpy is imported)::

    .venv/bin/python bench/boundary.py [--repeats N]
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402 - BLAS threads must be set before numpy is imported
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import brentq  # noqa: E402

from pipeline import Scenario  # noqa: E402
from pipeline.theory import solve, spike_margin  # noqa: E402

TOLERANCE = 1e-6  # of the bracket, for both methods
ALIGN_PRESENT = 1e-8  # as pipeline.analysis: a spike carrying the target

# name: (scenario at a signal value, side, target, bracket, closed form or None)
CASES: dict[str, tuple[Callable[[float], Scenario], str, str, tuple[float, float], float | None]] = {
    "square loss, c = 0.5 (BBP)": (
        lambda s: Scenario(0.5, model="linear", loss="square", mu={"norm": s}),
        "right",
        "mu",
        (0.75, 1.0),
        0.5**0.25,
    ),
    "logistic, w = w*, μ ⊥ w*, c = 0.25": (
        lambda s: Scenario(0.25, w_star={"norm": 1.0}, mu={"norm": s, "angle": 90}),
        "right",
        "mu",
        (0.5, 0.75),
        None,
    ),
    "Corollary 2 (left), c = 0.1": (
        lambda s: Scenario(0.1, w_star={"norm": 0.0}, w={"norm": s}),
        "left",
        "w",
        (1.25, 1.5),
        None,
    ),
}


class Counted:
    """A function of the signal that counts its calls."""

    def __init__(self, function: Callable[[float], float]) -> None:
        self.function, self.calls = function, 0

    def __call__(self, value: float) -> float:
        self.calls += 1
        return self.function(value)


def by_margin(
    scenario: Callable[[float], Scenario], side: str, bracket: tuple[float, float]
) -> tuple[float, int]:
    margin = Counted(lambda s: spike_margin(scenario(s), side))
    a, b = bracket
    return float(brentq(margin, a, b, xtol=TOLERANCE * (b - a))), margin.calls


def by_bisection(
    scenario: Callable[[float], Scenario], side: str, target: str, bracket: tuple[float, float]
) -> tuple[float, int]:
    def present(s: float) -> float:
        result = solve(scenario(s))
        edge = result.edge_right if side == "right" else result.edge_left
        beyond = result.spikes > edge if side == "right" else result.spikes < edge
        return float(np.any(beyond & (result.spike_align[target] > ALIGN_PRESENT)))

    counted = Counted(present)
    a, b = bracket
    while b - a > TOLERANCE * (bracket[1] - bracket[0]):
        middle = 0.5 * (a + b)
        a, b = (a, middle) if counted(middle) else (middle, b)
    return 0.5 * (a + b), counted.calls


def timed(function: Callable[[], tuple[float, int]], repeats: int) -> tuple[float, float, int]:
    times, result = [], (np.nan, 0)
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), *result


def row(name: str, case: tuple, repeats: int) -> str:
    scenario, side, target, bracket, exact = case
    t_root, root, root_calls = timed(lambda: by_margin(scenario, side, bracket), repeats)
    t_bis, bis, bis_calls = timed(lambda: by_bisection(scenario, side, target, bracket), repeats)
    error = "—" if exact is None else f"{abs(root - exact):.1e} / {abs(bis - exact):.1e}"
    return (
        f"| {name} | {t_root:.3f} | {root_calls} | {t_bis:.2f} | {bis_calls} | **{t_bis / t_root:.1f}** "
        f"| {abs(root - bis):.1e} | {error} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        "| case | det G root (s) | calls | bisection on solve (s) | calls | bisection / root "
        "| root − bisection | error vs closed form (root / bisection) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, case in CASES.items():
        print(row(name, case, args.repeats))


if __name__ == "__main__":
    main()
