"""The ``hessweep`` command: run, status, query, validate; bad input is exit code 2, nothing written."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.store import open_cube

SMALL = """
name: small
p: 20
trials: 2
seed: 5
grid:
  c: [0.5, 1.5]
  loss: [logistic, exponential]
  signal: [0.0, 2.0]
fixed: {mu: {angle: 90}}
theory: {points: 48}
"""


def write(directory: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def only_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small sweep, run once through the command line with one worker."""
    directory = tmp_path_factory.mktemp("cli")
    path = directory / "small.zarr"
    sweep = write(directory, SMALL)
    assert main(["run", str(sweep), "--store", str(path), "--workers", "1", "--no-progress"]) == 0
    return path


# ----------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the field, nothing written
# ----------------------------------------------------------------------------------------------

BAD_SWEEPS = {
    "unknown key": (SMALL + "colour: red\n", "colour: unknown key"),
    "wrong type": (SMALL.replace("p: 20", "p: twenty"), "p: must be an integer, not str"),
    "empty axis": (SMALL.replace("signal: [0.0, 2.0]", "signal: []"), "grid.signal: must not be empty"),
    "c <= 0": (SMALL.replace("c: [0.5, 1.5]", "c: [0.5, -1.0]"), "grid.c[1]: must be > 0"),
    "model cannot take the loss": (
        SMALL.replace("seed: 5", "seed: 5\nmodel: linear"),
        "grid.loss[0]: the logistic loss needs labels in {-1, +1}",
    ),
}


@pytest.mark.parametrize("case", BAD_SWEEPS)
def test_bad_sweep_is_refused_with_its_path_and_nothing_written(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text, message = BAD_SWEEPS[case]
    sweep = write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    for argv in (["run", str(sweep)], ["run", str(sweep), "--store", "named.zarr"], ["validate", str(sweep)]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert only_line(captured.err).startswith(f"hessweep: {message}")
        assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


def test_missing_sweep_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "absent.yaml")]) == 2
    assert only_line(capsys.readouterr().err).startswith("hessweep: ")


def test_validate_prints_points_tasks_and_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(write(tmp_path, SMALL))]) == 0
    out = capsys.readouterr().out
    # 2 c × 2 loss × 2 signal = 8 points, 16 with trials; 8 theory + 8 Monte Carlo + 4 writes.
    assert "sweep small: valid" in out
    assert re.search(r"^points: 8 \(c × loss × signal\), 16 with trials$", out, re.M)
    assert re.search(r"^tasks: 20 \(8 theory, 8 Monte Carlo, 4 cell writes\)$", out, re.M)
    assert re.search(
        r"^work: 8 theory solves of 48 points, 8 Monte Carlo draws × 2 losses, about [0-9.e+]+ flops$",
        out,
        re.M,
    )


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "hessweep"
    assert script.exists(), "install the package: pip install -e '.[test]'"
    done = subprocess.run(
        [script, "validate", write(tmp_path, SMALL)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "tasks: 20" in done.stdout


# ----------------------------------------------------------------------------------------------
# run, status, query on a store
# ----------------------------------------------------------------------------------------------


@pytest.mark.distributed
def test_run_again_skips_the_done_cells(small_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = write(small_store.parent, SMALL, "again.yaml")
    assert main(["run", str(sweep), "--store", str(small_store)]) == 0
    out = capsys.readouterr().out
    assert "cells: 0 computed, 4 skipped (already done or failed)" in out
    assert "failed points: 0" in out


@pytest.mark.distributed
def test_different_sweep_on_a_store_is_refused(small_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.relative_to(small_store) for p in small_store.rglob("*"))
    other = write(small_store.parent, SMALL.replace("p: 20", "p: 24"), "other.yaml")
    assert main(["run", str(other), "--store", str(small_store)]) == 2
    line = only_line(capsys.readouterr().err)
    assert line.startswith("hessweep: ")
    assert "p: 20 != 24" in line
    assert sorted(p.relative_to(small_store) for p in small_store.rglob("*")) == before


@pytest.mark.distributed
def test_status_counts_points_overall_and_per_axis(
    small_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(small_store), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["done"], summary["failed"], summary["total"]) == (16, 0, 16)

    assert main(["status", str(small_store)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^points: 16 done, 0 failed, 16 total$", out, re.M)
    # Per axis: each of the two c values holds 8 points.
    assert len(re.findall(r"^  \S+: 8 done, 0 failed, 8 total$", out, re.M)) >= 2


@pytest.mark.distributed
def test_query_csv_and_json_give_the_cube_values(
    small_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cube = open_cube(small_store)
    expected = cube["edge_right"].sel(c=1.5, loss="exponential").values  # over signal

    edge = ["--sel", "c=1.5", "loss=exponential", "--var", "edge_right"]
    assert main(["query", str(small_store), *edge, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [float(row["signal"]) for row in rows] == [0.0, 2.0]
    assert np.array_equal([float(row["edge_right"]) for row in rows], expected)

    assert main(["query", str(small_store), *edge, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["variable"] == "edge_right"
    assert document["selection"] == {"c": "1.5", "loss": "exponential"}
    # JSON has no inf or NaN: they come as "inf"/"-inf" and null.
    assert [record["edge_right"] for record in document["records"]] == ["inf", "inf"]
    assert np.array_equal([float(record["edge_right"]) for record in document["records"]], expected)

    assert main(["query", str(small_store), "--sel", "c=0.5", "--var", "spike", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)["records"]
    spikes = cube["spike"].sel(c=0.5).values  # loss × signal × spike_index, NaN padded
    assert len(records) == spikes.size
    assert [(r["loss"], r["signal"], r["spike_index"]) for r in records[:2]] == [
        ("logistic", 0.0, 0),
        ("logistic", 0.0, 1),
    ]
    found = [np.nan if r["spike"] is None else float(r["spike"]) for r in records]
    assert np.array_equal(found, spikes.ravel(), equal_nan=True)

    # A numeric value within rounding of a grid value selects it; the table prints.
    near = ["--sel", "c=1.5000000000000002", "signal=2", "loss=logistic", "--var", "eigenvalues"]
    assert main(["query", str(small_store), *near]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "eigenvalues" in table[0]
    assert len(table) == 1 + 2 * 20  # header, then 2 trials × p eigenvalues


@pytest.mark.distributed
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--sel", "c=0.7", "--var", "spike"], "--sel c=0.7: not a value of c"),
        (["--sel", "c=half", "--var", "spike"], "--sel c=half: not a number"),
        (["--sel", "loss=hinge", "--var", "spike"], "--sel loss=hinge: not a value of loss"),
        (["--sel", "colour=red", "--var", "spike"], "--sel colour=red: spike has no dimension colour"),
        (["--sel", "c", "--var", "spike"], "--sel c: expected DIM=VALUE"),
        (["--var", "spikes"], "--var spikes: no such variable"),
    ],
)
def test_bad_query_is_exit_2(
    small_store: Path, arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", str(small_store), *arguments]) == 2
    captured = capsys.readouterr()
    assert only_line(captured.err).startswith(f"hessweep: {message}")
    assert captured.out == ""


def test_status_of_a_missing_store_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path / "absent.zarr")]) == 2
    assert only_line(capsys.readouterr().err).startswith("hessweep: ")
    assert not (tmp_path / "absent.zarr").exists()
