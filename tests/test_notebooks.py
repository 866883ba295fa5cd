"""The notebooks run headless on small sweeps and draw their figures; the committed ones carry no outputs.

Each notebook is executed by nbclient in a fresh kernel whose working directory is ``notebooks/`` (as
when Jupyter opens it there), its parameters pointed by environment variables at small sweeps written
here.  ``phase_diagram`` runs its sweep through ``run_sweep`` on a real LocalCluster; ``spike_alignment``
opens cubes built in-process (``cube_from_yaml``), which ``run_sweep`` finds complete, so no cluster
starts; ``gallery`` runs at a small p.  The notebooks assert their exact results themselves (the
theory against the closed forms of the BBP transition); here we check that they ran, drew their
figures and reached those checks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode

from pipeline import store

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("arjevani_field", "gallery", "pennington_bahri", "phase_diagram", "spike_alignment")
# Per cell: the slowest runs a small sweep on a fresh two-worker cluster (about 15 s on 2 cores).
CELL_TIMEOUT = 300

# The BBP transition with constant g (logistic model at w = 0): both losses leave the bulk at
# ‖μ‖ = c^(1/4) = 0.71 and 1, each strictly inside the signal grid with values above it.
FEATURE = """
name: feature_small
p: 100
trials: 2
seed: 0
model: logistic
grid:
  c: [0.25, 1.0]
  loss: [logistic, square]
  signal: [0.0, 0.6, 1.2, 1.8]
signal: mu.norm
fixed: {w_star: {norm: 0.0}, w: zero, mu: {angle: 90}}
theory: {points: 96}
"""
# Corollary 2 at c = 0.1: the left spike of w appears at ‖w‖ ≈ 1.26, its gap peaks near 3.
LEFT = """
name: left_small
p: 100
trials: 2
seed: 0
model: logistic
grid:
  c: [0.1]
  loss: [logistic]
  signal: [0.5, 1.5, 3.0, 6.0]
signal: w.norm
fixed: {w_star: {norm: 0.0}, mu: {norm: 0.0}, w: {angle: 0}}
theory: {points: 96}
"""
# The spectral loss at optimal labels: a spike along w* leaves the right edge as ‖w*‖ grows
# (at ‖w*‖ ≈ 0.55 for c = 0.25).
RIGHT = """
name: right_small
p: 100
trials: 2
seed: 0
model: phase
grid:
  c: [0.25]
  loss: [spectral]
  signal: [0.2, 0.8, 1.4]
signal: w_star.norm
fixed: {w: zero, mu: {norm: 0.0}, labels: optimal}
theory: {points: 96}
"""
# Spectral initialisation in phase retrieval, optimal and trimmed labels: the transition is in c.
INIT_OPTIMAL = """
name: init_small
p: 100
trials: 2
seed: 0
model: phase
grid:
  c: [0.25, 1.0, 1.75]
  loss: [phase]
  signal: [1.0]
signal: w_star.norm
fixed: {w: zero, mu: {norm: 0.0}, labels: optimal}
theory: {points: 96}
"""
INIT_TRIM = """
name: trim_small
p: 100
trials: 2
seed: 0
model: phase
grid:
  c: [0.1, 0.3, 0.6]
  loss: [phase]
  signal: [1.0]
signal: w_star.norm
fixed: {w: zero, mu: {norm: 0.0}, labels: {name: trim, threshold: 1.5}}
theory: {points: 96}
"""


def execute(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> NotebookNode:
    """Run ``notebooks/<name>.ipynb`` with ``env`` (and no other HESSWEEP_ setting) and return it."""
    for key in [key for key in os.environ if key.startswith("HESSWEEP_")]:
        monkeypatch.delenv(key)
    # A scheduler address in the caller's environment would send the sweeps to that cluster.
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{name}.ipynb failed:\n{error}", pytrace=False)
    return notebook


def images(notebook: NotebookNode) -> int:
    """How many PNG figures the executed notebook shows."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def stdout(notebook: NotebookNode, cell_id: str) -> str:
    """What the cell ``cell_id`` printed."""
    cell = next(cell for cell in notebook.cells if cell.get("id") == cell_id)
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def write(directory: Path, text: str, name: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.distributed
def test_phase_diagram_runs_its_sweep_and_meets_the_closed_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = write(tmp_path, FEATURE, "feature.yaml")
    results = tmp_path / "results"
    notebook = execute(
        "phase_diagram", {"HESSWEEP_SWEEP": str(sweep), "HESSWEEP_RESULTS": str(results)}, monkeypatch
    )
    cube = results / "feature_small.zarr"
    assert store.pending_cells(cube) == []
    assert "8 cells computed, 0 already done, 0 points failed" in stdout(notebook, "run")
    # The notebook asserts |theory − c^(1/4)| < 1e-6; these lines say that it got there for both.
    checked = stdout(notebook, "closed-form-check")
    for loss in ("logistic", "square"):
        assert f"{loss}: theory boundary = c^(1/4) to" in checked
    # Per loss: the alignment phase diagram and the gap one.
    assert images(notebook) >= 4


def test_spike_alignment_draws_every_transition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cube_from_yaml: Callable[[str], Path]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    sweeps = {}
    named = (
        (FEATURE, "feature"),
        (LEFT, "left"),
        (RIGHT, "right"),
        (INIT_OPTIMAL, "init"),
        (INIT_TRIM, "trim"),
    )
    for text, name in named:
        cube = cube_from_yaml(text)
        # The notebook looks for RESULTS/<sweep name>.zarr: the complete cubes, built once per session.
        (results / cube.name).symlink_to(cube, target_is_directory=True)
        sweeps[name] = write(tmp_path, text, f"{name}.yaml")
    env = {
        "HESSWEEP_FEATURE_SWEEP": str(sweeps["feature"]),
        "HESSWEEP_LEFT_SWEEP": str(sweeps["left"]),
        "HESSWEEP_RIGHT_SWEEP": str(sweeps["right"]),
        "HESSWEEP_INIT_SWEEPS": f"{sweeps['init']},{sweeps['trim']},{tmp_path / 'absent.yaml'}",
        "HESSWEEP_RESULTS": str(results),
    }
    notebook = execute("spike_alignment", env, monkeypatch)
    checked = stdout(notebook, "closed-form-alignment")
    for loss in ("logistic", "square"):
        for c in ("0.25", "1"):
            assert f"{loss}, c = {c}: theory alignment = (ρ² − c)/(ρ² + cρ) to" in checked
    assert "0 cells computed" in stdout(notebook, "left-run")
    assert "0 cells computed" in stdout(notebook, "right-run")
    assert "absent.yaml: not found, skipped" in stdout(notebook, "init")
    # 2 losses × 2 c on the right, the left gap and 1 alignment, 1 model-induced right alignment,
    # the spectral-initialisation curves.
    assert images(notebook) >= 8


def test_gallery_draws_the_papers_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = execute("gallery", {"HESSWEEP_P": "120"}, monkeypatch)
    assert "7 cases at p = 120, n = 900" in stdout(notebook, "cases")
    # Figures 1, 2 and 3.
    assert images(notebook) >= 3


def test_every_notebook_is_tested() -> None:
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] for cell in code), "strip the outputs before committing"
    assert all(cell.execution_count is None for cell in code), "clear the execution counts"
    # Parameters in one cell at the top, after the introduction.
    assert notebook.cells[0].cell_type == "markdown"
    assert code[0].id == "parameters"
