"""Benchmark of the matrix-free Monte Carlo (``montecarlo: {method: lanczos}``) at large p.

Per case (p, c), in a child process of its own (so that its peak memory is its own): the keyed
draw of ``X`` in float32, the block Lanczos analysis, the theory, and then

* accuracy: the Kolmogorov distance of the quadrature's distribution function to the theory's (on
  both sides of every node and on a fine grid), the top Ritz value against the theory's spike and
  its eigenvector's alignment with μ against the theory's;
* speed: seconds of the draw and of the analysis, against a floor measured in the same run: one
  block product ``Xᵀ(g·(X V))/n`` (median of 3) times the steps — the part no Krylov method can skip;
* memory: the child's peak resident set against the size of ``X``;
* the dense eigendecomposition beside it: ``montecarlo.sample`` timed at smaller p (same c, the
  same process, two repeats each) and extrapolated as p³, with the memory it would need
  (``X`` in float64 and ``H``: ``8(np + p²)`` bytes).

Usage (from the repository root)::

    .venv/bin/python bench/lanczos.py            # p = 20 000 at c = 0.5 and p = 50 000 at c = 2
    .venv/bin/python bench/lanczos.py --quick    # p = 3000 and 6000, 40 steps: a smoke run
    .venv/bin/python bench/lanczos.py --write    # full run, recorded in bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from engine import (
    command_line,
    load_average,
    machine,
    measured_section,
    pause_of,
    run_parser,
    state_lines,
    write_results,
)

from pipeline import lanczos, montecarlo, theory
from pipeline.scenario import Scenario

ROOT = Path(__file__).resolve().parent.parent
# Logistic model and loss at w = w*, ‖w*‖ = 1, a mean μ ⊥ w* of norm 2: one spike on the right.
PROBES = 1
STEPS = 80
FULL_CASES = [(20_000, 0.5), (50_000, 2.0)]
QUICK_CASES = [(3_000, 0.5), (6_000, 2.0)]
QUICK_STEPS = 40
# Dense runs timed to extrapolate from (p), per case's c.
DENSE_SIZES = [1000, 2000, 3000]
QUICK_DENSE_SIZES = [500, 1000]


def scenario(c: float) -> Scenario:
    return Scenario(
        c, model="logistic", loss="logistic", mu={"norm": 2.0, "angle": 90}, w_star={"norm": 1.0}, w="w_star"
    )


def kolmogorov(result: lanczos.LanczosResult, limit: theory.TheoryResult) -> float:
    """sup |F_quadrature − F_theory| over a fine grid and both sides of every node."""
    span = result.nodes[-1] - result.nodes[0]
    grid = np.linspace(result.nodes[0] - 0.01 * span, result.nodes[-1] + 0.01 * span, 20_001)
    points = np.concatenate([grid, result.nodes, np.nextafter(result.nodes, -np.inf)])
    return float(np.max(np.abs(result.cdf(points) - limit.cdf(points))))


def run_case(p: int, c: float, steps: int, probes: int) -> dict[str, Any]:
    """One case, in this (child) process."""
    point = scenario(c)
    seed = (0, 1, 2, 0)
    start = time.perf_counter()
    features = lanczos.draw(point, p, seed, dtype="float32")
    drawn = time.perf_counter()
    result = lanczos.analyse(features, point, seed, probes=probes, steps=steps)
    analysed = time.perf_counter()
    limit = theory.solve(point)
    solved = time.perf_counter()

    curvature = point.curvature(features.y, features.h)
    product = lanczos._Product(features, curvature, lanczos._threads())
    block = np.linalg.qr(np.random.default_rng(0).standard_normal((p, probes)))[0]
    products = []
    for _ in range(3):
        begin = time.perf_counter()
        product(block)
        products.append(time.perf_counter() - begin)

    spike = float(limit.spikes[-1]) if limit.spikes.size else float("nan")
    spike_align = float(limit.spike_align["mu"][-1]) if limit.spikes.size else float("nan")
    return {
        "p": p,
        "c": c,
        "n": features.n,
        "steps": result.steps_done,
        "probes": probes,
        "threads": lanczos._threads(),
        "draw_s": drawn - start,
        "analyse_s": analysed - drawn,
        "theory_s": solved - analysed,
        "product_s": statistics.median(products),
        "ks": kolmogorov(result, limit),
        "top": float(result.top[0]),
        "top_residual": float(result.residual_top[0]),
        "spike": spike,
        "align": float(result.align_top["mu"][0]),
        "spike_align": spike_align,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "x_gb": features.nbytes / 1e9,
    }


def dense_times(c: float, sizes: list[int]) -> dict[int, float]:
    """Seconds of one dense ``montecarlo.sample`` per p (the faster of two)."""
    point = scenario(c)
    times = {}
    for p in sizes:
        runs = []
        for repeat in range(2):
            begin = time.perf_counter()
            montecarlo.sample(point, p, (0, repeat))
            runs.append(time.perf_counter() - begin)
        times[p] = min(runs)
    return times


def extrapolate(times: dict[int, float], p: int) -> float:
    """The dense time at ``p`` from the largest measured one, as p³ (the tridiagonalisation's)."""
    largest = max(times)
    return times[largest] * (p / largest) ** 3


def child(case: str) -> None:
    p, c, steps, probes = case.split(",")
    print(json.dumps(run_case(int(p), float(c), int(steps), int(probes))))


def report(results: dict[str, Any]) -> str:
    lines = [f"## {results['date']} — `{results['command']}`", ""]
    if results["quick"]:
        lines += ["Smoke run (`--quick`): small sizes; not for comparison.", ""]
    lines += [
        *state_lines(results),
        "",
        "### Matrix-free Monte Carlo (`method: lanczos`) at large p",
        "",
        f"Logistic model and loss, w = w*, ‖w*‖ = 1, μ ⊥ w*, ‖μ‖ = 2 (one spike); X in float32, "
        f"{results['cases'][0]['probes']} probes; one child process per case, BLAS and the product "
        f"threads at {results['cases'][0]['threads']}. `floor` = steps × one block product "
        "Xᵀ(g·(XV))/n (median of 3): the memory traffic no Krylov method avoids. "
        "KS: sup |F_quadrature − F_theory|. Dense: "
        "`montecarlo.sample` (float64, all eigenvalues) timed at p = "
        f"{', '.join(map(str, results['dense_sizes']))} and extrapolated as p³ from the largest; its "
        "memory is X (float64) + H.",
        "",
        "| p | c | n | X (GB) | steps | draw (s) | analyse (s) | total (s) | floor (s) | analyse / floor "
        "| peak RSS (GB) | KS vs theory | top Ritz / spike − 1 | residual | cos² μ (theory) "
        "| dense, extrapolated (s) | dense memory (GB) |",
        "|" + "---|" * 17,
    ]
    for case in results["cases"]:
        total = case["draw_s"] + case["analyse_s"]
        floor = case["steps"] * case["product_s"]
        dense_memory = 8 * (case["n"] * case["p"] + case["p"] ** 2) / 1e9
        lines.append(
            f"| {case['p']} | {case['c']:g} | {case['n']} | {case['x_gb']:.2f} | {case['steps']} | "
            f"{case['draw_s']:.1f} | {case['analyse_s']:.1f} | **{total:.1f}** | {floor:.1f} | "
            f"{case['analyse_s'] / floor:.2f} | {case['peak_rss_gb']:.2f} | **{case['ks']:.4f}** | "
            f"**{case['top'] / case['spike'] - 1:+.1e}** | {case['top_residual']:.0e} | "
            f"{case['align']:.3f} ({case['spike_align']:.3f}) | {case['dense_s']:.0f} | {dense_memory:.0f} |"
        )
    lines += ["", "Dense `montecarlo.sample` measured (s):", ""]
    for c, times in results["dense"].items():
        lines.append(f"- c = {c}: " + ", ".join(f"p = {p}: {t:.2f}" for p, t in times.items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = run_parser(__doc__, "smoke run with small sizes", "unused")
    parser.add_argument("--probes", type=int, default=PROBES, help=f"Lanczos block size (default {PROBES})")
    parser.add_argument("--steps", type=int, help=f"Lanczos steps (default {STEPS}, quick {QUICK_STEPS})")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        child(args.case)
        return
    started = time.perf_counter()
    cases = QUICK_CASES if args.quick else FULL_CASES
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    sizes = QUICK_DENSE_SIZES if args.quick else DENSE_SIZES
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "command": command_line(__file__),
        "quick": args.quick,
        "machine": machine(),
        "load_start": load_average(),
        "state": {},
        "cases": [],
        "dense": {},
        "dense_sizes": sizes,
    }
    pause = pause_of(args)
    for index, (p, c) in enumerate(cases):

        def run(p: int = p, c: float = c) -> dict[str, Any]:
            command = [sys.executable, __file__, "--case", f"{p},{c},{steps},{args.probes}"]
            done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
            return json.loads(done.stdout.strip().splitlines()[-1])

        case = measured_section(results["state"], f"case{index}", f"p = {p}, c = {c:g}", run, pause)
        dense = measured_section(
            results["state"], f"dense{index}", f"dense at c = {c:g}", lambda c=c: dense_times(c, sizes), pause
        )
        case["dense_s"] = extrapolate(dense, p)
        results["cases"].append(case)
        results["dense"][f"{c:g}"] = dense
    results["load_end"] = load_average()
    results["wall_s"] = time.perf_counter() - started
    text = report(results)
    print(text)
    if args.write:
        write_results(text, text.splitlines()[0])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
