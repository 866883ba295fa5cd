"""The network experiment of Pennington & Bahri (Sec. 6.4, Fig. 6) on a time budget: energy and index.

Runs :func:`pipeline.pbnet.find_critical_point` at n = 16 (512 parameters) for
φ ∈ {1/16, 1/8, 1/4, 1/3, 1/2, 2/3}, round-robin (trial t at every φ, then trial t + 1), until the
budget is spent, on one BLAS thread.  Prints, per φ:

* runs and runs kept (``J ≤ 10⁻⁶``), median seconds per run;
* the energies of the minimisers (``α = 0``) against the paper's observation ``½(1 − φ)²``;
* the fit ``α ≈ α₀(ε − ε_c)^{3/2}`` at ``0 < α ≤ alpha_max`` with ``ε_c`` free (and with the exponent
  free), against the paper's intercepts read off Fig. 6;
* the theory's ``ε_c`` (``pipeline.pb.critical_energy``, Wigner eq. (21) and product eq. (32)) at
  ``σ = 1``, and beside it the median over the kept runs of ``σ = tr H₀/P``, the mean eigenvalue of
  the Gauss–Newton part (the theory's ``ε_c`` scales as ``σ²``; at the drifting, large-weight
  minimisers ``σ`` is far from the start's, so no single ``σ`` fits a ratio's runs);
* how many kept runs change index when the zero tolerance is divided or multiplied by 10, and the
  fitted ``ε_c`` with the index counted at zero tolerances from 1e-8 to 1e-4;
* the mean energy per bin of the index;

and before that the cost of the Hessian (build and eigenvalues) at n = 16.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/pbnet.py                 # 600 s budget
    OMP_NUM_THREADS=1 .venv/bin/python bench/pbnet.py --quick         # n = 6, 30 s: a smoke run
    .venv/bin/python bench/pbnet.py --save runs.json                  # keep every run's numbers
    .venv/bin/python bench/pbnet.py --load runs.json --alpha-max 0.05 # re-analyse without running
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads (threadpoolctl below also pins it): the timings are of one
# core and the runs bit-reproducible.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from pipeline.errors import ScenarioError  # noqa: E402
from pipeline.pb.analysis import PAPER_CRITICAL_ENERGY  # noqa: E402
from pipeline.pbnet import (  # noqa: E402
    ZERO_TOLERANCE,
    draw_problem,
    find_critical_point,
    fit_index_law,
    hessian,
    hessian_parts,
)

ROOT = Path(__file__).resolve().parent.parent
PHIS = [1 / 16, 1 / 8, 1 / 4, 1 / 3, 1 / 2, 2 / 3]
# Zero tolerances (relative to max|λ|) at which every run's negative eigenvalues are counted.
TOLERANCES = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4]
# The index bins of the summary table (α = 0 apart).
BINS = [0.0, 0.01, 0.03, 0.1, 0.2, 0.5]


def _theory() -> Any:
    """``pipeline.pb.critical_energy`` if that module is there (another part of the issue)."""
    try:
        from pipeline.pb import critical_energy
    except ImportError:
        return None
    return critical_energy


def hessian_timing(n: int, repeats: int = 20) -> dict[str, float]:
    """Median seconds of ``hessian`` and of ``eigvalsh`` at width n, φ = 1/4, a random point."""
    problem = draw_problem(0.25, (0, 0), n=n)
    theta, X, Y = problem.theta0, problem.X, problem.Y
    build, eigen = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        H = hessian(theta, X, Y)
        middle = time.perf_counter()
        np.linalg.eigvalsh(H)
        build.append(middle - start)
        eigen.append(time.perf_counter() - middle)
    return {"hessian_s": statistics.median(build), "eigvalsh_s": statistics.median(eigen)}


def record(point: Any, seconds: float) -> dict[str, Any]:
    """The numbers of one run that the analysis needs (JSON-ready)."""
    problem = draw_problem(point.phi, point.seed, n=point.n)
    H0, _ = hessian_parts(point.theta, problem.X, problem.Y)
    values = point.eigenvalues
    scale = float(np.abs(values).max())
    negatives = {f"{tau:g}": int(np.count_nonzero(values < -tau * scale)) for tau in TOLERANCES}
    return {
        "phi": point.phi,
        "seed": list(point.seed),
        "energy": point.energy,
        "index": point.index,
        "negatives": negatives,
        "parameters": int(values.size),
        "J": point.gradient_norm_sq,
        "converged": point.converged,
        "level": point.level,
        "start_energy": point.start_energy,
        "weight_norm": point.weight_norm,
        "iterations": point.iterations,
        "cycles": point.cycles,
        "sigma": float(np.trace(H0)) / values.size,
        "seconds": seconds,
        "message": point.message,
    }


def run(phis: list[float], n: int, budget: float, seed: int) -> list[dict[str, Any]]:
    """Round-robin over φ until the budget is spent (a round is started only if it should fit)."""
    runs: list[dict[str, Any]] = []
    start = time.perf_counter()
    trial = 0
    while True:
        elapsed = time.perf_counter() - start
        per_round = elapsed / trial if trial else 0.0
        if trial and elapsed + per_round > budget:
            break
        for i_phi, phi in enumerate(phis):
            begin = time.perf_counter()
            point = find_critical_point(phi, (seed, i_phi, trial), n=n)
            runs.append(record(point, time.perf_counter() - begin))
        trial += 1
        print(f"  round {trial}: {time.perf_counter() - start:.0f} s", flush=True)
    return runs


def _fit_line(energies: np.ndarray, indices: np.ndarray, alpha_max: float, exponent: float | None) -> str:
    try:
        fit = fit_index_law(energies, indices, alpha_max=alpha_max, exponent=exponent)
    except ScenarioError as error:
        return f"no fit ({error.reason})"
    text = f"ε_c = {fit.critical_energy:.3f} ± {fit.critical_energy_stderr:.3f}, α₀ = {fit.alpha0:.3g}"
    if exponent is None:
        text += f", p = {fit.exponent:.2f}"
    return text + f" ({fit.points} runs, rms {fit.rms:.3f})"


def report(runs: list[dict[str, Any]], phis: list[float], alpha_max: float) -> str:
    critical_energy = _theory()
    lines = []
    header = (
        "| φ | m | runs | kept | s/run (median) | minimisers: count, ε min / median / max | ½(1−φ)² "
        "| fit p = 3/2 | fit p free | paper ε_c | σ = tr H₀/P (median) | theory ε_c (σ = 1) wigner / product "
        "| α changed at τ/10, 10τ |"
    )
    lines += [header, "|" + "---|" * 13]
    for phi in phis:
        mine = [r for r in runs if abs(r["phi"] - phi) < 1e-12]
        kept = [r for r in mine if r["converged"]]
        if not mine:
            continue
        energies = np.array([r["energy"] for r in kept])
        indices = np.array([r["index"] for r in kept])
        minimisers = np.sort(energies[indices == 0.0])
        if minimisers.size:
            low = (
                f"{minimisers.size}: {minimisers[0]:.3f} / {np.median(minimisers):.3f} / {minimisers[-1]:.3f}"
            )
        else:
            low = "0"
        sigma = float(np.median([r["sigma"] for r in kept])) if kept else float("nan")
        if critical_energy is not None:
            theory = f"{critical_energy(phi):.3f} / {critical_energy(phi, 'product'):.3f}"
        else:
            theory = "n/a"
        counts = [
            sum(r["negatives"][f"{tolerance:g}"] != round(r["index"] * r["parameters"]) for r in kept)
            for tolerance in (ZERO_TOLERANCE / 10, ZERO_TOLERANCE * 10)
        ]
        parameters = mine[0]["parameters"]
        n = round((parameters / 2) ** 0.5)
        m = round(2 * n / phi)
        seconds = statistics.median(r["seconds"] for r in mine)
        lines.append(
            f"| {phi:.4g} | {m} | {len(mine)} | {len(kept)} | {seconds:.2f} "
            f"| {low} | {0.5 * (1 - phi) ** 2:.3f} "
            f"| {_fit_line(energies, indices, alpha_max, 1.5) if kept else '-'} "
            f"| {_fit_line(energies, indices, alpha_max, None) if kept else '-'} "
            f"| {PAPER_CRITICAL_ENERGY.get(phi, float('nan')):.3f} | {sigma:.3f} | {theory} "
            f"| {counts[0]}, {counts[1]} |"
        )
    lines += [
        "",
        f"ε_c of the fit p = 3/2 (0 < α ≤ {alpha_max:g}) with the index counted at other zero tolerances:",
        "",
    ]
    lines += ["| τ | " + " | ".join(f"φ = {phi:.4g}" for phi in phis) + " |", "|" + "---|" * (len(phis) + 1)]
    for tolerance in TOLERANCES:
        cells = []
        for phi in phis:
            kept = [r for r in runs if abs(r["phi"] - phi) < 1e-12 and r["converged"]]
            energies = np.array([r["energy"] for r in kept])
            indices = np.array([r["negatives"][f"{tolerance:g}"] / r["parameters"] for r in kept])
            try:
                fit = fit_index_law(energies, indices, alpha_max=alpha_max)
                cells.append(f"{fit.critical_energy:.3f} ± {fit.critical_energy_stderr:.3f} ({fit.points})")
            except ScenarioError:
                cells.append("-")
        lines.append(f"| {tolerance:g} | " + " | ".join(cells) + " |")
    lines += ["", "Mean energy (runs) per index bin, kept runs:", ""]
    labels = ["α = 0"] + [f"({a:g}, {b:g}]" for a, b in itertools.pairwise(BINS)]
    lines += ["| φ | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for phi in phis:
        kept = [r for r in runs if abs(r["phi"] - phi) < 1e-12 and r["converged"]]
        if not kept:
            continue
        cells = []
        for lower, upper in [(None, None), *itertools.pairwise(BINS)]:
            if lower is None:
                chosen = [r["energy"] for r in kept if r["index"] == 0.0]
            else:
                chosen = [r["energy"] for r in kept if lower < r["index"] <= upper]
            cells.append(f"{np.mean(chosen):.3f} ({len(chosen)})" if chosen else "-")
        lines.append(f"| {phi:.4g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of runs (default 600)")
    parser.add_argument("--n", type=int, default=16, help="width (default 16)")
    parser.add_argument("--seed", type=int, default=2017, help="key of the survey (default 2017)")
    parser.add_argument("--alpha-max", type=float, default=0.1, help="fit runs with 0 < α ≤ this (0.1)")
    parser.add_argument("--quick", action="store_true", help="n = 6, 30 s: a smoke run")
    parser.add_argument("--save", type=Path, help="write every run's numbers to this JSON file")
    parser.add_argument("--load", type=Path, help="analyse the runs of a --save file, run nothing")
    args = parser.parse_args()
    if args.quick:
        args.n, args.budget = 6, 30.0
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    with threadpool_limits(limits=1):
        if args.load:
            saved = json.loads(args.load.read_text())
            runs, meta = saved["runs"], saved["meta"]
        else:
            meta = {"n": args.n, "budget_s": args.budget, "seed": args.seed, "commit": commit}
            meta |= hessian_timing(args.n)
            print(f"n = {args.n}, seed {args.seed}, budget {args.budget:.0f} s, commit {commit}", flush=True)
            begin = time.perf_counter()
            runs = run(PHIS, args.n, args.budget, args.seed)
            meta["wall_s"] = time.perf_counter() - begin
            if args.save:
                args.save.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    print()
    print(
        f"n = {meta['n']} ({2 * meta['n'] ** 2} parameters), seed {meta['seed']}, commit {meta['commit']}, "
        f"{len(runs)} runs in {meta['wall_s']:.0f} s on one BLAS thread; "
        f"zero tolerance {ZERO_TOLERANCE:g}·max|λ|"
    )
    print(
        f"Hessian at n = {meta['n']}: build {1e3 * meta['hessian_s']:.1f} ms, "
        f"eigvalsh {1e3 * meta['eigvalsh_s']:.1f} ms (medians of 20)"
    )
    print()
    print(report(runs, PHIS, args.alpha_max))


if __name__ == "__main__":
    main()
