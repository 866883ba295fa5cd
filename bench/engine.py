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
from pathlib import Path
from typing import Any

import numpy as np
import scipy
from scipy.linalg import blas, eigvalsh

from pipeline import Scenario
from pipeline.montecarlo import draw, sample
from pipeline.theory import solve

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

# The floor of the theory: plain damped fixed-point iteration of the Marchenko–Pastur δ(z).
FLOOR_ETA = 1e-6
FLOOR_DAMPING = 0.5
FLOOR_TOLERANCE = 1e-8
FLOOR_ITERATIONS = 10_000


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
            times = interleaved(
                {
                    "sample": lambda r, s=scenario, p=p: sample(s, p, seed_of(r)),
                    "floor": lambda r, n=n, p=p: floor_trial(n, p, seed_of(r)),
                },
                repeats,
            )
            row = {"c": c, "p": p, "n": n, **compare(times, "sample", "floor")}
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


def floor_marchenko_pastur(x: np.ndarray, c: float, eta: float) -> tuple[np.ndarray, int, int]:
    """Damped fixed-point iteration δ ← (1-a)δ + a·c/(F(δ) - z), F(δ) = 1/(1+δ), vectorised over z.

    Returns δ, the number of points not converged after ``FLOOR_ITERATIONS`` and the iterations
    taken by the slowest converged point.
    """
    z = x + 1j * eta
    delta = c / (1.0 - z)
    active = np.ones(z.shape, dtype=bool)
    slowest = 0
    for iteration in range(1, FLOOR_ITERATIONS + 1):
        current = delta[active]
        update = (1.0 - FLOOR_DAMPING) * current + FLOOR_DAMPING * c / (1.0 / (1.0 + current) - z[active])
        delta[active] = update
        done = np.abs(update - current) < FLOOR_TOLERANCE
        if done.any():
            slowest = iteration
        active[active] = ~done
        if not active.any():
            break
    return delta, int(active.sum()), slowest


def marchenko_pastur_density(x: np.ndarray, c: float) -> np.ndarray:
    """The exact density of XᵀX/n for C = I, p/n = c ≤ 1."""
    lo, hi = (1 - np.sqrt(c)) ** 2, (1 + np.sqrt(c)) ** 2
    inside = (x > lo) & (x < hi)
    density = np.zeros_like(x)
    density[inside] = np.sqrt((hi - x[inside]) * (x[inside] - lo)) / (2 * np.pi * c * x[inside])
    return density


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

    # The floor: the same 400 abscissae as solve's Marchenko–Pastur grid, η = 1e-6 × scale.
    scenario = THEORY_SCENARIOS["Marchenko–Pastur (c = 0.5)"]()
    c = scenario.c
    x = solve(scenario).x
    scale = (1.0 + np.sqrt(c)) ** 2  # solve's spectral scale: E|g| E t (1 + √c)² with g ≡ t ≡ 1
    eta = FLOOR_ETA * scale
    calls = {
        "solve": lambda r: solve(scenario),
        "floor": lambda r: floor_marchenko_pastur(x, c, eta),
    }
    times = interleaved(calls, repeats)
    delta, failed, slowest = floor_marchenko_pastur(x, c, eta)
    # Read the density as solve does: m = 1/(F(δ) - z), density = Im m / π.
    density = (1.0 / (1.0 / (1.0 + delta) - (x + 1j * eta))).imag / np.pi
    exact = marchenko_pastur_density(x, c)
    solved = solve(scenario)
    floor = {
        "points": len(x),
        "eta": eta,
        "solve_s": statistics.median(times["solve"]),
        "floor_s": statistics.median(times["floor"]),
        "solve_spread": spread(times["solve"]),
        "floor_spread": spread(times["floor"]),
        "failed": failed,
        "slowest": slowest,
        "floor_density_error": float(np.max(np.abs(density - exact))),
        "solve_density_error": float(np.max(np.abs(solved.density - exact))),
    }
    floor["ratio"] = floor["solve_s"] / floor["floor_s"]
    return {"rows": rows, "floor": floor, "blas": blas_info()}


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


def command_line() -> str:
    executable = Path(sys.executable)
    try:
        executable = executable.absolute().relative_to(ROOT)
    except ValueError:
        pass
    script = Path(__file__).resolve().relative_to(ROOT)
    return shlex.join([str(executable), str(script), *sys.argv[1:]])


def report(results: dict[str, Any]) -> str:
    lines = [f"## {results['date']} — `{results['command']}`", ""]
    if results["quick"]:
        lines += ["Smoke run (`--quick`): small sizes, few repeats; not for comparison.", ""]
    lines += ["Machine:", ""]
    lines += [f"- {key}: {value}" for key, value in results["machine"].items()]
    lines += [
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
        "Logistic model, logistic loss, default BLAS threads. Target later: ratio ≤ 1.15.",
        "",
        "| c | p | n | sample (s) | floor (s) | sample / floor | paired | spread sample, floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["montecarlo"]:
        lines.append(
            f"| {r['c']:g} | {r['p']} | {r['n']} | {r['sample_s']:.4f} | {r['floor_s']:.4f} | "
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
    f = theory["floor"]
    lines += [
        "",
        "Reference row (a comparison, not a target): Marchenko–Pastur, `solve` against a plain damped "
        f"fixed-point iteration δ ← ½δ + ½·c/(1/(1+δ) − z) on the same {f['points']} abscissae at "
        f"Im z = 1e-6 × scale = {f['eta']:.2e}, stopping at |Δδ| < 1e-8 or {FLOOR_ITERATIONS} iterations "
        "(solve itself reads the density at Im z = 1e-10 × scale). Interleaved, medians. "
        "`density error`: max |density − exact Marchenko–Pastur density| on the grid.",
        "",
        "| | solve (s) | fixed point (s) | solve / fixed point | fixed point: points not converged "
        "| fixed point: iterations of slowest converged point | density error solve, fixed point |",
        "|---|---|---|---|---|---|---|",
        f"| Marchenko–Pastur, c = 0.5 | {f['solve_s']:.4f} | {f['floor_s']:.4f} | **{f['ratio']:.2f}** | "
        f"{f['failed']} of {f['points']} | {f['slowest']} | "
        f"{f['solve_density_error']:.1e}, {f['floor_density_error']:.1e} |",
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run with small sizes and few repeats")
    parser.add_argument("--write", action="store_true", help="record the run in bench/RESULTS.md")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (default 7, quick 3)")
    parser.add_argument(
        "--idle", type=float, help="least seconds of idle before a section (default 5, quick 0.5)"
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        help="most seconds to wait before a section for other processes to go quiet (default 60, quick 10)",
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
    pause = (
        args.idle if args.idle is not None else (0.5 if quick else 5.0),
        args.max_wait if args.max_wait is not None else (10.0 if quick else 60.0),
    )
    sizes = [100, 200, 400] if quick else [500, 1000, 2000]
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
        state = settle(*pause)
        state["dgemm_ms"] = dgemm_ms()
        print(f"{title} (waited {state['waited_s']:.0f} s for a quiet machine)", file=sys.stderr, flush=True)
        before = cpu_counters()
        out = run()
        after = cpu_counters()
        state["seconds"] = after["wall"] - before["wall"]
        state["foreign_cores"] = foreign_cores(before, after)
        state["steal_s"] = after["steal"] - before["steal"]
        results["state"][key] = {"title": title, **state}
        return out

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
