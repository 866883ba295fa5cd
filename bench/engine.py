"""Benchmarks of the engine: Monte Carlo per trial, theory per grid point, peak memory.

Every figure is a ratio against a floor measured side by side in the same run: the measured call
and its floor are interleaved (A, B, A, B, ...) after one warm-up call each, and the medians and
the ratio of the medians are reported.  See ``bench/README.md``.

Usage (from the repository root)::

    .venv/bin/python bench/engine.py            # full run, prints Markdown
    .venv/bin/python bench/engine.py --quick    # smoke run with small sizes
    .venv/bin/python bench/engine.py --write    # full run, and record it in bench/RESULTS.md

The theory section runs in a child process (``--section theory``) started with
``OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = MKL_NUM_THREADS = 1``: seconds per grid point on one core.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy
from scipy.linalg import blas, eigvalsh

from pipeline import Scenario
from pipeline.montecarlo import draw, sample
from pipeline.theory import solve
from pipeline.theory.bulk import BulkEquation
from pipeline.theory.law import curvature_law, geometry

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# Section 3: the scenarios timed through pipeline.theory.solve.
THEORY_SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "Marchenko–Pastur (c = 0.5)": lambda: Scenario(0.5, model="linear", loss="square", w_star={"norm": 0.0}),
    "logistic / logistic (c = 0.5)": lambda: Scenario(0.5),
    "logistic / exponential (c = 0.5)": lambda: Scenario(0.5, loss="exponential"),
    "phase retrieval (c = 800/6000)": lambda: Scenario(
        800 / 6000,
        model="phase",
        loss="phase",
        w_star={"norm": 2.0},
        w={"norm": 1.0, "angle": 90},
    ),
    "two-block covariance (c = 800/6000)": lambda: Scenario(
        800 / 6000,
        w_star={"norm": 0.0},
        mu={"norm": 1.0, "spread": True},
        w={"norm": 1.0, "spread": True},
        cov={"eigenvalues": [1, 4], "weights": [0.5, 0.5]},
    ),
    "Corollary 2 (c = 0.1)": lambda: Scenario(0.1, w_star={"norm": 0.0}, w={"norm": 2.0}),
    "spikes from μ and w (c = 0.1)": lambda: Scenario(0.1, w={"norm": 3.0}, mu={"norm": 2.0, "angle": 90}),
}

# The floor of the theory: plain damped fixed-point iteration of δ(z) for these scenarios (the names
# of THEORY_SCENARIOS): one discrete law, a bounded and an unbounded law of g, two bulks.
FLOOR_SCENARIOS = (
    "Marchenko–Pastur (c = 0.5)",
    "logistic / logistic (c = 0.5)",
    "logistic / exponential (c = 0.5)",
    "two-block covariance (c = 800/6000)",
)
# Im z of the fixed point, relative to solve's spectral scale: at solve's own 1e-10 the contraction
# factor next to an edge is so close to 1 that hardly any point near an edge would converge.
FLOOR_ETA = 1e-6
FLOOR_DAMPING = 0.5
# The step asked of both: solve's Newton stops at a step below 1e-8 |δ| (which leaves it ~1e-16 off:
# its convergence is quadratic; the fixed point's is linear, so this leaves it far less accurate).
FLOOR_TOLERANCE = 1e-8
FLOOR_ITERATIONS = 10_000
# The fixed point at solve's accuracy: closer to the real axis (at solve's own Im z = 1e-10 × scale
# its density has no Im z bias against the reference), stopping at a step below 1e-14 |δ|, a
# rounding-level step (the iterate is then within 1e-14 / (1 − contraction) of its limit).  Points
# next to an edge, where the contraction factor tends to 1, do not get there in FLOOR_ITERATIONS:
# the row reports the best the fixed point reaches within them, and the time it takes.
FLOOR_MATCHED_ETAS = (1e-8, 1e-10)
FLOOR_MATCHED_TOLERANCE = 1e-14

# Section 1: at p >= LARGE_P a call takes ~8 s on 2 cores, so fewer repeats keep the run near 6 min.
LARGE_P = 4000
LARGE_P_REPEATS = 3


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def interleaved(calls: dict[str, Callable[[int], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call, interleaved A, B, A, B, ...; one warm-up call each, not counted.

    Each call receives the repeat index (a seed for the random draws); the warm-up gets -1.
    """
    for call in calls.values():
        call(-1)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for repeat in range(repeats):
        for name, call in calls.items():
            gc.collect()
            start = time.perf_counter()
            call(repeat)
            times[name].append(time.perf_counter() - start)
    return times


def paired(numerator: list[float], denominator: list[float]) -> float:
    """Median of the ratios of the interleaved pairs: robust to slow drifts of the machine's speed."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def compare(times: dict[str, list[float]], measured: str, reference: str) -> dict[str, float]:
    """Medians and spreads of two interleaved series, the ratio of medians and the paired ratio."""
    row = {}
    for name in (measured, reference):
        row[f"{name}_s"] = statistics.median(times[name])
        row[f"{name}_spread"] = spread(times[name])
    row["ratio"] = row[f"{measured}_s"] / row[f"{reference}_s"]
    row["paired"] = paired(times[measured], times[reference])
    return row


def spread(values: list[float]) -> float:
    """max/min of the repeats: how noisy the machine was."""
    return max(values) / min(values)


# Another process busier than this (in cores, averaged over a 1 s window) makes the machine "busy".
QUIET_CORES = 0.2


def cpu_counters() -> dict[str, float]:
    """Wall clock, CPU time of the whole machine and of this process (children included), steal.

    From ``/proc/stat``: busy = user + nice + system + irq + softirq; steal is time the hypervisor
    gave to someone else.  NaN where ``/proc/stat`` is unavailable.
    """
    own = os.times()
    counters = {
        "wall": time.perf_counter(),
        "own": own.user + own.system + own.children_user + own.children_system,
        "busy": float("nan"),
        "steal": float("nan"),
    }
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return counters
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    counters["busy"] = (user + nice + system + irq + softirq) / tick
    counters["steal"] = steal / tick
    return counters


def foreign_cores(before: dict[str, float], after: dict[str, float]) -> float:
    """Average number of cores other processes kept busy between two counters."""
    wall = after["wall"] - before["wall"]
    return ((after["busy"] - before["busy"]) - (after["own"] - before["own"])) / wall


def settle(minimum: float, maximum: float) -> dict[str, float]:
    """Idle at least ``minimum`` seconds, then until no other process is busy (at most ``maximum``).

    The machine has 2 cores and OpenBLAS threads spin-wait: another busy process (a test run)
    slows a 2-thread BLAS call by 10-30x, far more than it slows a 1-thread call.
    """
    gc.collect()
    start = time.perf_counter()
    time.sleep(minimum)
    while True:
        before = cpu_counters()
        time.sleep(1.0)
        load = foreign_cores(before, cpu_counters())
        waited = time.perf_counter() - start
        if not load > QUIET_CORES or waited >= maximum:  # NaN (no /proc/stat) counts as quiet
            return {"waited_s": waited, "load_at_start": load}


def dgemm_ms() -> float:
    """Milliseconds of a fixed 400 × 400 ``dgemm`` (median of 7): the machine's speed right now."""
    a = np.random.default_rng(0).standard_normal((400, 400))
    times = []
    for _ in range(7):
        start = time.perf_counter()
        blas.dgemm(1.0, a, a)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def seed_of(repeat: int) -> tuple[int, int]:
    return (2024, repeat + 1)


# ----------------------------------------------------------------------------------------------
# Section 1: Monte Carlo per trial against draw + dsyrk + eigvalsh
# ----------------------------------------------------------------------------------------------


def floor_trial(n: int, p: int, seed: tuple[int, int]) -> np.ndarray:
    """The least any Monte Carlo trial must do: draw X, form XᵀX/n, all its eigenvalues."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    features = rng.standard_normal((n, p))
    # features.T is Fortran-ordered: dsyrk(trans=0) reads it without a copy; lower triangle.
    hessian = blas.dsyrk(1.0 / n, features.T, trans=0, lower=1)
    return eigvalsh(hessian, lower=True, driver="evd", check_finite=False)


def section_montecarlo(sizes: list[int], ratios: list[float], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for c in ratios:
        scenario = Scenario(c)
        for p in sizes:
            n = round(p / c)
            count = min(repeats, LARGE_P_REPEATS) if p >= LARGE_P else repeats
            times = interleaved(
                {
                    "sample": lambda r, s=scenario, p=p: sample(s, p, seed_of(r)),
                    "floor": lambda r, n=n, p=p: floor_trial(n, p, seed_of(r)),
                },
                count,
            )
            row = {"c": c, "p": p, "n": n, "repeats": count, **compare(times, "sample", "floor")}
            rows.append(row)
            print(
                f"  mc c={c:g} p={p}: sample {row['sample_s']:.3f}s floor {row['floor_s']:.3f}s "
                f"ratio {row['ratio']:.2f}",
                file=sys.stderr,
                flush=True,
            )
    return rows


# ----------------------------------------------------------------------------------------------
# Section 2: Monte Carlo against the naive script
# ----------------------------------------------------------------------------------------------


def naive_trial(scenario: Scenario, p: int, seed: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """What a user would write: the same draw and g, a dense diag(g), then a full eigh."""
    d = draw(scenario, p, seed)
    g = scenario.curvature(d.y, d.h)
    hessian = d.X.T @ np.diag(g) @ d.X / d.n
    return np.linalg.eigh(hessian)


def section_naive(sizes: list[int], c: float, repeats: int) -> list[dict[str, Any]]:
    rows = []
    scenario = Scenario(c)
    for p in sizes:
        # Same answer (checked once, outside the timing): the two paths see the same draw.
        fast = sample(scenario, p, seed_of(0)).eigenvalues
        slow = naive_trial(scenario, p, seed_of(0))[0]
        agreement = float(np.max(np.abs(fast - slow)) / np.max(np.abs(slow)))
        times = interleaved(
            {
                "naive": lambda r, p=p: naive_trial(scenario, p, seed_of(r)),
                "sample": lambda r, p=p: sample(scenario, p, seed_of(r)),
            },
            repeats,
        )
        row = {"c": c, "p": p, "n": round(p / c), "agreement": agreement, **compare(times, "naive", "sample")}
        rows.append(row)
        print(
            f"  naive p={p}: naive {row['naive_s']:.3f}s sample {row['sample_s']:.3f}s "
            f"ratio {row['ratio']:.2f}",
            file=sys.stderr,
            flush=True,
        )
    return rows


# ----------------------------------------------------------------------------------------------
# Section 3: theory per grid point, one core (run in a child process)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedPointProblem:
    """δ(z) = c Σ_j π_j t_j / (t_j F(δ) − z), F(δ) = E[g/(1+gδ)], with the law of g that solve uses.

    The law is the marginal law of g over the full quadrature of ``curvature_law``, equal values
    merged (``CurvatureLaw.marginal``): solve's density and edges are solved on it whole (a
    compressed law only gives solve its support search and starting points); its mass at 0 only
    enters through ``atom_zero``.
    """

    c: float
    t: np.ndarray
    pi: np.ndarray
    g: np.ndarray
    weight: np.ndarray
    atom_zero: float
    scale: float

    @classmethod
    def of(cls, scenario: Scenario) -> FixedPointProblem:
        law = curvature_law(scenario, geometry(scenario))
        g, weight = law.marginal()
        t = np.asarray(scenario.covariance.eigenvalues, dtype=float)
        pi = np.asarray(scenario.covariance.weights, dtype=float)
        c = scenario.c
        # solve's spectral scale: E|g| E t (1 + √c)².
        scale = float(np.abs(law.g) @ law.weight) * float(t @ pi) * (1.0 + np.sqrt(c)) ** 2
        return cls(
            c=c,
            t=t,
            pi=pi,
            g=g,
            weight=weight,
            atom_zero=max(0.0, 1.0 - (1.0 - law.zero_mass) / c),
            scale=scale,
        )

    def image(self, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The right-hand side c Σ π t / (t F(δ) − z)."""
        f = (self.g / (1.0 + delta[:, None] * self.g)) @ self.weight
        return self.c * (self.pi * self.t / (self.t * f[:, None] - z[:, None])).sum(-1)

    def density(self, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Im m(z)/π without the atom at 0, m = Σ π / (t F(δ) − z), as solve reads it."""
        f = (self.g / (1.0 + delta[:, None] * self.g)) @ self.weight
        m = (self.pi / (self.t * f[:, None] - z[:, None])).sum(-1)
        atom = self.atom_zero * z.imag / (z.real**2 + z.imag**2)
        return np.maximum((m.imag - atom) / np.pi, 0.0)

    def equation(self) -> BulkEquation:
        """The same equation in solve's form, for the Newton reference."""
        return BulkEquation(
            self.c, self.t, self.pi, self.g, self.weight, np.zeros(self.g.size), self.atom_zero
        )


def damped_fixed_point(
    problem: FixedPointProblem, z: np.ndarray, tolerance: float = FLOOR_TOLERANCE, *, relative: bool = False
) -> tuple[np.ndarray, int, int]:
    """δ ← (1 − a)δ + a·image(δ), vectorised over z; a point stops at |Δδ| < ``tolerance``
    (times |δ| if ``relative``).

    Started, like solve, from the large-|z| limit c Σ π t / (t E[g] − z).  Returns δ, the number of
    points not converged after ``FLOOR_ITERATIONS`` and the iterations of the slowest converged point.
    """
    f_mean = float(problem.g @ problem.weight)
    delta = problem.c * (problem.pi * problem.t / (problem.t * f_mean - z[:, None])).sum(-1)
    active = np.ones(z.shape, dtype=bool)
    slowest = 0
    for iteration in range(1, FLOOR_ITERATIONS + 1):
        current = delta[active]
        update = (1.0 - FLOOR_DAMPING) * current + FLOOR_DAMPING * problem.image(current, z[active])
        delta[active] = update
        done = np.abs(update - current) < (tolerance * np.abs(update) if relative else tolerance)
        if done.any():
            slowest = iteration
        active[active] = ~done
        if not active.any():
            break
    return delta, int(active.sum()), slowest


def density_errors(
    density: np.ndarray, reference: np.ndarray, x: np.ndarray, edges: np.ndarray
) -> tuple[float, float]:
    """max |ρ − ρ_ref| inside the bulks, and Σ over bulks of ∫ |ρ − ρ_ref| dx (trapezoidal).

    The bulk ends are left out of the max (solve sets its density there to exactly 0, any Im z > 0
    does not) and gaps out of the integral (a trapezoid across a gap would integrate an end value
    over the whole gap).
    """
    error = np.abs(density - reference)
    inside = np.zeros(x.shape, dtype=bool)
    integral = 0.0
    for a, b in edges:
        bulk = (x >= a) & (x <= b)
        inside |= (x > a) & (x < b)
        integral += float(np.trapezoid(error[bulk], x[bulk]))
    return float(error[inside].max()), integral


def matched_key(eta: float) -> str:
    """The name of the fixed point at solve's accuracy at Im z = ``eta`` × scale in a row."""
    return f"matched_{eta:.0e}"


def floor_row(label: str, repeats: int) -> dict[str, Any]:
    """solve against the damped fixed point on solve's abscissae; both densities against a reference.

    Reference: Newton's method (solve's own ``BulkEquation``, continuation in Im z) on the full,
    uncompressed law at solve's Im z = 1e-10 × scale, converged to ~1e-16.  The fixed point's δ is
    also polished by Newton at its own Im z: the gap between the two is its iteration error; the
    rest of its error is the bias of reading the density at Im z = 1e-6 × scale.  The fixed point is
    also run at solve's accuracy (``FLOOR_MATCHED_ETAS``, ``FLOOR_MATCHED_TOLERANCE``), all four
    calls interleaved.
    """
    scenario = THEORY_SCENARIOS[label]()
    problem = FixedPointProblem.of(scenario)
    solved = solve(scenario)
    x = solved.x
    z = x + 1j * FLOOR_ETA * problem.scale
    matched_z = {eta: x + 1j * eta * problem.scale for eta in FLOOR_MATCHED_ETAS}

    def matched(eta: float) -> tuple[np.ndarray, int, int]:
        return damped_fixed_point(problem, matched_z[eta], FLOOR_MATCHED_TOLERANCE, relative=True)

    calls: dict[str, Callable[[int], Any]] = {
        "fixed_point": lambda r: damped_fixed_point(problem, z),
        "solve": lambda r: solve(scenario),
    }
    for eta in FLOOR_MATCHED_ETAS:
        calls[matched_key(eta)] = lambda r, eta=eta: matched(eta)
    times = interleaved(calls, repeats)
    delta, failed, slowest = damped_fixed_point(problem, z)
    density = problem.density(delta, z)
    equation = problem.equation()
    reference_delta, reference_ok = equation.solve(x, problem.scale)
    reference = problem.density(reference_delta, x + 1j * equation.eta(problem.scale))
    polished, _ = equation.newton(delta, z, tolerance=1e-14)
    solve_max, solve_l1 = density_errors(solved.density, reference, x, solved.edges)
    floor_max, floor_l1 = density_errors(density, reference, x, solved.edges)
    _, iteration_l1 = density_errors(density, problem.density(polished, z), x, solved.edges)
    matched_rows = []
    for eta in FLOOR_MATCHED_ETAS:
        key = matched_key(eta)
        matched_delta, matched_failed, _ = matched(eta)
        matched_max, matched_l1 = density_errors(
            problem.density(matched_delta, matched_z[eta]), reference, x, solved.edges
        )
        matched_rows.append(
            {
                "eta": eta,
                **compare(times, key, "solve"),
                "failed": matched_failed,
                "max": matched_max,
                "l1": matched_l1,
            }
        )
    return {
        "label": label,
        "points": len(x),
        "law_nodes": len(problem.g),
        "eta": FLOOR_ETA * problem.scale,
        **compare(times, "fixed_point", "solve"),
        "failed": failed,
        "slowest": slowest,
        "reference_ok": bool(reference_ok.all()),
        "solve_max": solve_max,
        "solve_l1": solve_l1,
        "floor_max": floor_max,
        "floor_l1": floor_l1,
        "iteration_l1": iteration_l1,
        "matched": matched_rows,
    }


def section_theory(repeats: int) -> dict[str, Any]:
    """Run in the single-threaded child; returns plain data for the parent."""
    rows = []
    for label, make in THEORY_SCENARIOS.items():
        scenario = make()
        outcome: dict[str, Any] = {"label": label}
        try:
            result = solve(scenario)  # warm-up, not counted
            times = []
            for _ in range(repeats):
                gc.collect()
                start = time.perf_counter()
                result = solve(scenario)
                times.append(time.perf_counter() - start)
            outcome.update(
                seconds=statistics.median(times),
                spread=spread(times),
                converged=bool(result.converged),
                spikes=len(result.spikes),
                points=len(result.x),
            )
        except Exception as error:  # a broken scenario is a result to report, not a crash
            outcome["error"] = f"{type(error).__name__}: {error}"
        rows.append(outcome)
        print(
            f"  theory {label}: {outcome.get('seconds', outcome.get('error'))}", file=sys.stderr, flush=True
        )

    floors = []
    for label in FLOOR_SCENARIOS:
        floors.append(floor_row(label, repeats))
        row = floors[-1]
        print(
            f"  fixed point {label}: {row['fixed_point_s']:.3f}s solve {row['solve_s']:.3f}s "
            f"ratio {row['ratio']:.1f}, {row['failed']} not converged; at solve's accuracy: "
            + ", ".join(
                f"Im z {m['eta']:.0e} {m[matched_key(m['eta']) + '_s']:.3f}s ratio {m['ratio']:.1f} "
                f"max {m['max']:.1e}"
                for m in row["matched"]
            ),
            file=sys.stderr,
            flush=True,
        )
    return {"rows": rows, "floors": floors, "blas": blas_info()}


def run_theory_child(repeats: int) -> dict[str, Any]:
    env = {**os.environ, **SINGLE_THREAD_ENV}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--section",
        "theory",
        "--repeats",
        str(repeats),
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    sys.stderr.write(completed.stderr)
    if completed.returncode != 0:
        raise RuntimeError(f"the theory child failed with exit code {completed.returncode}")
    return json.loads(completed.stdout)


# ----------------------------------------------------------------------------------------------
# Section 4: peak memory of one sample
# ----------------------------------------------------------------------------------------------


def section_memory(p: int, ratios: list[float]) -> list[dict[str, Any]]:
    rows = []
    for c in ratios:
        scenario = Scenario(c)
        n = round(p / c)
        sample(scenario, p, seed_of(0))  # import-time and first-call allocations out of the way
        gc.collect()
        tracemalloc.start()
        sample(scenario, p, seed_of(0))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append(
            {
                "c": c,
                "p": p,
                "n": n,
                "peak_mb": peak / 1e6,
                "x_mb": n * p * 8 / 1e6,
                "h_mb": p * p * 8 / 1e6,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------
# Machine and report
# ----------------------------------------------------------------------------------------------


def blas_info() -> list[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    return [
        f"{i.get('internal_api')} {i.get('version')} ({i.get('threading_layer', '?')} threading, "
        f"{i.get('architecture', '?')} kernel, {i.get('num_threads')} threads) "
        f"{Path(i.get('filepath', '')).name}"
        for i in threadpool_info()
    ]


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def git_state() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.rstrip("\n")  # not strip(): porcelain lines start with a space

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "pipeline").splitlines()
    if dirty:
        return f"{head} + uncommitted changes to {', '.join(line[3:] for line in dirty)}"
    return head


def machine() -> dict[str, str]:
    return {
        "nproc": f"{os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})",
        "CPU": cpu_model(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "numpy / scipy": f"{np.__version__} / {scipy.__version__}",
        "BLAS (threadpoolctl)": "; ".join(blas_info()),
        "code": git_state(),
    }


def command_line(script: str = __file__) -> str:
    """The command that ran ``script`` (this one by default), relative to the repository root."""
    executable = Path(sys.executable)
    try:
        executable = executable.absolute().relative_to(ROOT)
    except ValueError:
        pass
    relative = Path(script).resolve().relative_to(ROOT)
    return shlex.join([str(executable), str(relative), *sys.argv[1:]])


def state_lines(results: dict[str, Any]) -> list[str]:
    """The machine and its state per section, as Markdown lines (shared with ``bench/sweep.py``)."""
    return [
        "Machine:",
        "",
        *(f"- {key}: {value}" for key, value in results["machine"].items()),
        f"- load average (1, 5, 15 min) at start: {results['load_start']}; at end: {results['load_end']}",
        f"- wall time of the run: {results['wall_s']:.0f} s",
        "",
        "Machine state per section: idle before it (at least the `--idle` time, then until other "
        f"processes used < {QUIET_CORES} core, at most `--max-wait`); speed of a fixed 400 × 400 `dgemm` "
        "at its start; CPU that other processes used during it (average cores: a test run beside the "
        "benchmark shows here); CPU time stolen by the hypervisor during it.",
        "",
        "| section | idle before (s) | dgemm (ms) | duration (s) | other processes (cores) | steal (s) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {v['title']} | {v['waited_s']:.0f} | {v['dgemm_ms']:.2f} | {v['seconds']:.0f} | "
            f"{v['foreign_cores']:.2f} | {v['steal_s']:.1f} |"
            for v in results["state"].values()
        ),
    ]


def report(results: dict[str, Any]) -> str:
    lines = [f"## {results['date']} — `{results['command']}`", ""]
    if results["quick"]:
        lines += ["Smoke run (`--quick`): small sizes, few repeats; not for comparison.", ""]
    lines += [
        *state_lines(results),
        "",
        f"Repeats: {results['repeats']} interleaved (A, B, A, B, …) after one warm-up call each; "
        "medians; the ratio (bold) is the ratio of the medians; `paired` is the median of the ratios of "
        "the interleaved pairs (robust to drifts in the machine's speed); `spread` is max/min over the "
        "repeats.",
        "",
        "### 1. Monte Carlo per trial: `sample` vs floor",
        "",
        "Floor: `rng.standard_normal((n, p))` (PCG64) + `dsyrk` + `eigvalsh(driver='evd')` "
        "(eigenvalues only). "
        "Logistic model, logistic loss, default BLAS threads. Target later: ratio ≤ 1.15. "
        f"At p ≥ {LARGE_P}, {LARGE_P_REPEATS} repeats (a call takes seconds there).",
        "",
        "| c | p | n | repeats | sample (s) | floor (s) | sample / floor | paired | spread sample, floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["montecarlo"]:
        lines.append(
            f"| {r['c']:g} | {r['p']} | {r['n']} | {r['repeats']} | {r['sample_s']:.4f} | "
            f"{r['floor_s']:.4f} | "
            f"**{r['ratio']:.2f}** | {r['paired']:.2f} | {r['sample_spread']:.2f}, {r['floor_spread']:.2f} |"
        )
    lines += [
        "",
        "### 2. Monte Carlo vs the naive script",
        "",
        "Naive: the same `draw` and `g`, then `X.T @ np.diag(g) @ X / n` and `np.linalg.eigh` (all "
        f"eigenvectors); both sides include the draw; {results['naive_repeats']} repeats. "
        "Target later: naive / sample ≥ 3.5 at p = 2000. "
        "`agreement`: max |λ_sample − λ_naive| / max |λ|.",
        "",
        "| c | p | n | naive (s) | sample (s) | naive / sample | paired | spread naive, sample | agreement |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["naive"]:
        lines.append(
            f"| {r['c']:g} | {r['p']} | {r['n']} | {r['naive_s']:.4f} | {r['sample_s']:.4f} | "
            f"**{r['ratio']:.2f}** | {r['paired']:.2f} | {r['naive_spread']:.2f}, {r['sample_spread']:.2f} | "
            f"{r['agreement']:.1e} |"
        )
    theory = results["theory"]
    lines += [
        "",
        "### 3. Theory: seconds per `solve(scenario)`, one core",
        "",
        "Child process with `OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1` "
        f"(BLAS there: {'; '.join(theory['blas'])}). Default 400 grid points; median of "
        f"{results['theory_repeats']} calls after one warm-up.",
        "",
        "| scenario | seconds | spread | converged | spikes |",
        "|---|---|---|---|---|",
    ]
    for r in theory["rows"]:
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error']} | | | |")
        else:
            lines.append(
                f"| {r['label']} | {r['seconds']:.4f} | {r['spread']:.2f} | {r['converged']} | "
                f"{r['spikes']} |"
            )
    lines += [
        "",
        "Against a plain damped fixed point (target: fixed point / solve ≥ 20), first at the same step "
        "tolerance, then at solve's accuracy (second table). "
        "The fixed point iterates δ ← ½δ + ½·c Σ_j π_j t_j / (t_j F(δ) − z), F(δ) = E[g/(1+gδ)] over "
        "the full quadrature of the law of g that solve uses (`curvature_law`, equal values of g merged: "
        "`CurvatureLaw.marginal`; `nodes` below), "
        "vectorised over all of solve's abscissae at once, converged points dropped, on the same "
        "abscissae at Im z = 1e-6 × scale, each point stopping at |Δδ| < 1e-8 (solve's Newton tolerance) "
        f"or after {FLOOR_ITERATIONS} iterations. Interleaved, one core, medians of "
        f"{results['theory_repeats']}. Density errors against a reference: Newton with continuation "
        "(solve's `BulkEquation`) on the full, uncompressed law at solve's Im z = 1e-10 × scale: the "
        "fixed point's own equation, and the one solve's density is polished on (from a compressed law's "
        "solution), so solve's error below is its convergence error, and in `L1` the panels next to the "
        "bulk ends, where solve's density is exactly 0. `max`: inside the bulks, ends left out (set by the "
        "points next to an edge, where the density rises like a square root); `L1`: ∫|ρ − ρ_ref| dx over the "
        "bulks. `iteration L1`: the fixed point against its own limit at its own Im z (its δ polished by "
        "Newton), the part of its error that more iterations would remove; the rest "
        "is the bias of Im z = 1e-6.",
        "",
        "| scenario | nodes | solve (s) | fixed point (s) | fixed point / solve | paired "
        "| not converged | iterations of slowest | solve: max, L1 | fixed point: max, L1 | iteration L1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in theory["floors"]:
        lines.append(
            f"| {f['label']} | {f['law_nodes']} | {f['solve_s']:.4f} | {f['fixed_point_s']:.4f} | "
            f"**{f['ratio']:.1f}** | {f['paired']:.1f} | {f['failed']} of {f['points']} | {f['slowest']} | "
            f"{f['solve_max']:.1e}, {f['solve_l1']:.1e} | {f['floor_max']:.1e}, {f['floor_l1']:.1e} | "
            f"{f['iteration_l1']:.1e} |"
        )
    etas = " and ".join(f"{eta:.0e}" for eta in FLOOR_MATCHED_ETAS)
    lines += [
        "",
        f"At solve's accuracy: the same fixed point, interleaved with the calls above, at Im z = {etas} × "
        f"scale (at solve's own 1e-10 the reference is its limit: no Im z bias), each point stopping at "
        f"|Δδ| < {FLOOR_MATCHED_TOLERANCE:.0e} |δ| (a rounding-level step) or after {FLOOR_ITERATIONS} "
        "iterations. Next to an edge the contraction factor tends to 1 and the points there do not "
        "converge: the errors are the best the fixed point reaches in that many iterations, the time is "
        "what they cost.",
        "",
        "| scenario | Im z / scale | fixed point (s) | fixed point / solve | paired | not converged "
        "| fixed point: max, L1 | solve: max, L1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in theory["floors"]:
        for m in f["matched"]:
            lines.append(
                f"| {f['label']} | {m['eta']:.0e} | {m[matched_key(m['eta']) + '_s']:.4f} | "
                f"**{m['ratio']:.1f}** | {m['paired']:.1f} | {m['failed']} of {f['points']} | "
                f"{m['max']:.1e}, {m['l1']:.1e} | {f['solve_max']:.1e}, {f['solve_l1']:.1e} |"
            )
    lines += [
        "",
        "### 4. Peak memory of one `sample`",
        "",
        "`tracemalloc` peak (allocations through Python and numpy, not BLAS-internal buffers).",
        "",
        "| c | p | n | peak (MB) | X (MB) | H (MB) | peak / (X + H) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["memory"]:
        lines.append(
            f"| {r['c']:g} | {r['p']} | {r['n']} | {r['peak_mb']:.1f} | {r['x_mb']:.1f} | {r['h_mb']:.1f} | "
            f"{r['peak_mb'] / (r['x_mb'] + r['h_mb']):.2f} |"
        )
    return "\n".join(lines) + "\n"


RESULTS_HEADER = """# Benchmark results

Recorded by `bench/engine.py --write` (see `bench/README.md`). Every figure is a ratio against a floor
measured side by side in the same run, on the machine described in its section: compare ratios, not
seconds, across sections.
"""


def write_results(section: str, heading: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else RESULTS_HEADER
    # Replace a section with the same heading (same date and command), or append.
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")


def load_average() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run_parser(description: str, quick_help: str, repeats_help: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: ``--quick``, ``--write``, ``--repeats``,
    ``--idle`` and ``--max-wait`` (read back with :func:`pause_of`)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--write", action="store_true", help="record the run in bench/RESULTS.md")
    parser.add_argument("--repeats", type=int, help=repeats_help)
    parser.add_argument(
        "--idle", type=float, help="least seconds of idle before a section (default 5, quick 0.5)"
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        help="most seconds to wait before a section for other processes to go quiet (default 60, quick 10)",
    )
    return parser


def measured_section(
    states: dict[str, Any],
    key: str,
    title: str,
    run: Callable[[], Any],
    pause: tuple[float, float],
    counters: Callable[[], dict[str, float]] = cpu_counters,
    foreign: Callable[[dict[str, float], dict[str, float]], float] = foreign_cores,
) -> Any:
    """Run one section on a quiet machine and record its state in ``states[key]``: the wait, the
    dgemm speed at its start, its duration, other processes' CPU (``foreign``) and steal."""
    state = settle(*pause)
    state["dgemm_ms"] = dgemm_ms()
    print(f"{title} (waited {state['waited_s']:.0f} s for a quiet machine)", file=sys.stderr, flush=True)
    before = counters()
    out = run()
    after = counters()
    state["seconds"] = after["wall"] - before["wall"]
    state["foreign_cores"] = foreign(before, after)
    state["steal_s"] = after["steal"] - before["steal"]
    states[key] = {"title": title, **state}
    return out


def pause_of(args: argparse.Namespace) -> tuple[float, float]:
    """``(idle, max_wait)`` before each section, from :func:`run_parser`'s options."""
    return (
        args.idle if args.idle is not None else (0.5 if args.quick else 5.0),
        args.max_wait if args.max_wait is not None else (10.0 if args.quick else 60.0),
    )


def main() -> None:
    parser = run_parser(
        __doc__, "smoke run with small sizes and few repeats", "repeats per measurement (default 7, quick 3)"
    )
    parser.add_argument(
        "--section",
        choices=["all", "theory"],
        default="all",
        help="'theory' runs only the theory section and prints JSON (the child process mode)",
    )
    args = parser.parse_args()

    if args.section == "theory":
        if any(os.environ.get(name) != "1" for name in SINGLE_THREAD_ENV):
            print("warning: the theory section is meant to run with one BLAS thread", file=sys.stderr)
        json.dump(section_theory(args.repeats or 5), sys.stdout)
        return

    quick = args.quick
    repeats = args.repeats or (3 if quick else 7)
    theory_repeats = args.repeats or (2 if quick else 5)
    naive_repeats = min(repeats, 3 if quick else 5)
    pause = pause_of(args)
    sizes = [100, 200, 400] if quick else [500, 1000, 2000, 4000]
    naive_sizes = [200, 400] if quick else [1000, 2000]

    start = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "command": command_line(),
        "quick": quick,
        "machine": machine(),
        "load_start": load_average(),
        "repeats": repeats,
        "theory_repeats": theory_repeats,
        "naive_repeats": naive_repeats,
    }
    results["state"] = {}

    def section(key: str, title: str, run: Callable[[], Any]) -> Any:
        return measured_section(results["state"], key, title, run, pause)

    results["montecarlo"] = section(
        "1", "1. Monte Carlo vs floor", lambda: section_montecarlo(sizes, [0.5, 2.0], repeats)
    )
    results["naive"] = section(
        "2", "2. Monte Carlo vs naive", lambda: section_naive(naive_sizes, 0.5, naive_repeats)
    )
    results["theory"] = section(
        "3", "3. theory (child process, one thread)", lambda: run_theory_child(theory_repeats)
    )
    results["memory"] = section("4", "4. memory", lambda: section_memory(max(sizes), [0.5, 2.0]))
    results["load_end"] = load_average()
    results["wall_s"] = time.perf_counter() - start

    text = report(results)
    print(text)
    if args.write:
        write_results(text, text.splitlines()[0])
        print(f"written to {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
