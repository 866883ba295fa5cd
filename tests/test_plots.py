"""Figures: every kind draws a valid PNG/PDF, from Python and from ``hessweep plot``; bad input is exit 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import StepPatch

from pipeline import analysis, plots
from pipeline.cli import main
from pipeline.store import open_cube

# The spiked Marchenko–Pastur case: g = 1, the spike of μ leaves the bulk at ‖μ‖ = c^(1/4).
LINEAR = """
name: linear
p: 200
trials: 3
seed: 1
model: linear
grid:
  c: [0.25, 0.5]
  loss: [square]
  signal: {start: 0.25, stop: 1.75, num: 5}
signal: mu.norm
fixed: {mu: {angle: 90}}
theory: {points: 96}
"""
# Two losses: logistic (bounded g, a spike appears) and exponential (unbounded: no theory spikes).
LOGISTIC = """
name: logistic
p: 200
trials: 3
seed: 2
grid:
  c: [0.5]
  loss: [logistic, exponential]
  signal: [0.0, 1.5, 3.0]
fixed: {mu: {angle: 90}}
theory: {points: 96}
"""
# A log-spaced c axis and an uneven signal axis: cells must have edges at the mid-points.
UNEVEN = """
name: uneven
p: 40
trials: 2
seed: 3
model: linear
grid:
  c: {start: 0.25, stop: 1.0, num: 3, scale: log}
  loss: [square]
  signal: [0.0, 0.5, 2.0]
fixed: {mu: {angle: 90}}
theory: {points: 48}
"""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC = b"%PDF-"
# Smallest size of an image with axes, ticks and text: an empty canvas is far smaller.
MIN_IMAGE_BYTES = 8_000


@pytest.fixture(scope="module")
def linear(cube_from_yaml: Callable[[str], Path]) -> Path:
    return cube_from_yaml(LINEAR)


@pytest.fixture(scope="module")
def logistic(cube_from_yaml: Callable[[str], Path]) -> Path:
    return cube_from_yaml(LOGISTIC)


def assert_image(path: Path) -> None:
    data = path.read_bytes()
    magic = PNG_MAGIC if path.suffix == ".png" else PDF_MAGIC
    assert data.startswith(magic), data[:16]
    assert len(data) > MIN_IMAGE_BYTES


def panels(figure: Figure) -> list:
    """The figure's axes without the colour bar's."""
    return [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]


def by_gid(ax, gid: str) -> list:
    return [artist for artist in ax.get_children() if artist.get_gid() == gid]


def only_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ----------------------------------------------------------------------------------------------
# hessweep plot: every kind writes a valid image
# ----------------------------------------------------------------------------------------------

CLI_CASES = {
    "phase-diagram png": ("linear", ["phase-diagram"], "png"),
    "phase-diagram gap, one loss, pdf": (
        "logistic",
        ["phase-diagram", "--loss", "exponential", "--var", "gap"],
        "pdf",
    ),
    "phase-diagram left side": ("logistic", ["phase-diagram", "--side", "left"], "png"),
    # 1.5000000001 is 1.5 to within the --sel tolerance, as for `hessweep query`.
    "spectrum with MP fit": (
        "linear",
        ["spectrum", "--sel", "c=0.5", "loss=square", "signal=1.3750000001", "--mp-fit", "--bins", "30"],
        "png",
    ),
    "spectrum unbounded, pdf": (
        "logistic",
        ["spectrum", "--sel", "c=0.5", "loss=exponential", "signal=3"],
        "pdf",
    ),
    "alignment": ("linear", ["alignment", "--loss", "square", "--c", "0.5"], "png"),
    "alignment target and side, pdf": (
        "logistic",
        ["alignment", "--loss", "exponential", "--c", "0.5", "--target", "mu", "--side", "right"],
        "pdf",
    ),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_plot_command_writes_a_valid_image(
    case: str, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cube, arguments, suffix = CLI_CASES[case]
    store = request.getfixturevalue(cube)
    out = tmp_path / f"figure.{suffix}"
    assert main(["plot", str(store), *arguments, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert_image(out)


# ----------------------------------------------------------------------------------------------
# hessweep plot: bad input is exit 2, one line naming the option, nothing written
# ----------------------------------------------------------------------------------------------

BAD_PLOTS = {
    "unknown kind": (["histogram"], "KIND histogram: not a kind of figure"),
    "kind of another family": (
        ["index"],
        "KIND index: a figure of pb cubes; this cube is of family glm "
        "(its kinds: phase-diagram, spectrum, alignment)",
    ),
    "option of no kind of its family": (
        ["index-energy", "--bins", "5"],
        "--bins: not an option of index-energy",
    ),
    "unknown loss": (["phase-diagram", "--loss", "hinge"], "--loss hinge: not a loss of this cube"),
    "unknown loss, alignment": (["alignment", "--loss", "hinge", "--c", "0.5"], "--loss hinge: not a loss"),
    "c not on the grid": (["alignment", "--loss", "square", "--c", "0.3"], "--c 0.3: not a value of c"),
    "c not a number": (["alignment", "--loss", "square", "--c", "half"], "--c half: not a number"),
    "--sel c not on the grid": (
        ["spectrum", "--sel", "c=0.3", "loss=square", "signal=1.75"],
        "--sel c=0.3: not a value of c",
    ),
    "--sel signal not on the grid": (
        ["spectrum", "--sel", "c=0.5", "loss=square", "signal=1.6"],
        "--sel signal=1.6: not a value of signal",
    ),
    "--sel incomplete": (
        ["spectrum", "--sel", "c=0.5", "loss=square"],
        "--sel: spectrum needs c, loss and signal",
    ),
    "--sel other dimension": (
        ["spectrum", "--sel", "c=0.5", "loss=square", "signal=1.75", "trial=0"],
        "--sel trial=0: spectrum selects only c, loss and signal",
    ),
    "spectrum without --sel": (["spectrum"], "--sel: required for spectrum"),
    "alignment without --c": (["alignment", "--loss", "square"], "--c: required for alignment"),
    "alignment without --loss": (["alignment", "--c", "0.5"], "--loss: required for alignment"),
    "option of another kind": (["phase-diagram", "--mp-fit"], "--mp-fit: not an option of phase-diagram"),
    "bad --var": (["phase-diagram", "--var", "spike"], "--var spike: must be one of align, gap"),
    "bad --side": (["phase-diagram", "--side", "top"], "--side top: must be one of auto, left, right"),
    "bad --target": (
        ["alignment", "--loss", "square", "--c", "0.5", "--target", "x"],
        "--target x: must be one of mu, w_star, w",
    ),
    "bad --bins": (
        ["spectrum", "--sel", "c=0.5", "loss=square", "signal=1.75", "--bins", "0"],
        "--bins 0: must",
    ),
    "svg": (["phase-diagram", "-o", "{tmp}/figure.svg"], "-o {tmp}/figure.svg: cannot write '.svg'"),
    "no suffix": (["phase-diagram", "-o", "{tmp}/figure"], "-o {tmp}/figure: cannot write no suffix"),
    "no -o": (["phase-diagram"], "-o: required"),
}
# Every other case writes to figure.png in the test's directory unless it names its own -o.
WITHOUT_OUTPUT = {"no -o"}


@pytest.mark.parametrize("case", BAD_PLOTS)
def test_bad_plot_is_exit_2_and_writes_nothing(
    case: str, linear: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments, message = BAD_PLOTS[case]
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    if "-o" not in arguments and case not in WITHOUT_OUTPUT:
        arguments += ["-o", str(tmp_path / "figure.png")]
    assert main(["plot", str(linear), *arguments]) == 2
    captured = capsys.readouterr()
    assert only_line(captured.err).startswith(f"hessweep: {message.format(tmp=tmp_path)}")
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("store", ["absent.zarr", "empty.zarr"])
def test_plot_of_a_store_that_is_not_a_cube_is_exit_2(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.zarr").mkdir()
    out = tmp_path / "figure.png"
    assert main(["plot", str(tmp_path / store), "phase-diagram", "-o", str(out)]) == 2
    assert only_line(capsys.readouterr().err).startswith(f"hessweep: {tmp_path / store}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.zarr"]


# ----------------------------------------------------------------------------------------------
# The figures from Python: what they show
# ----------------------------------------------------------------------------------------------


def test_phase_diagram_has_a_panel_per_loss_and_says_which_have_no_spikes(
    logistic: Path, tmp_path: Path
) -> None:
    figure = plots.phase_diagram(open_cube(logistic))
    axes = panels(figure)
    assert [ax.get_title().splitlines()[0] for ax in axes] == [
        "logistic: top eigenvector",
        "exponential: top eigenvector",
    ]
    assert "no spikes in theory" not in axes[0].get_title()
    assert "no spikes in theory" in axes[1].get_title()
    assert by_gid(axes[0], "boundary-theory-right")
    # The exponential loss has no theory boundary on either side.
    assert not [a for a in axes[1].get_children() if str(a.get_gid()).startswith("boundary-theory")]
    plots.save(figure, tmp_path / "phase.pdf")
    assert_image(tmp_path / "phase.pdf")


def test_phase_diagram_draws_the_analysis_boundaries_and_alignments(linear: Path) -> None:
    cube = open_cube(linear)
    (ax,) = panels(plots.phase_diagram(cube))
    assert ax.get_ylabel() == "‖μ‖"
    assert ax.get_xscale() == "linear"  # c = 0.25, 0.5: two values, less than a decade

    theory = analysis.phase_boundary(cube, "square", source="theory", side="right")
    (line,) = by_gid(ax, "boundary-theory-right")
    assert np.array_equal(line.get_xdata(), theory["c"].values)
    assert np.array_equal(line.get_ydata(), theory.values)
    # g = 1: a spiked Marchenko–Pastur matrix, whose spike leaves the bulk at ‖μ‖² = √c.
    np.testing.assert_allclose(line.get_ydata(), [0.25**0.25, 0.5**0.25], rtol=1e-6)
    mc = analysis.phase_boundary(cube, "square", source="mc", side="right")
    found = np.isfinite(mc.values)
    assert found.any()
    (points,) = [
        a for a in by_gid(ax, "boundary-mc-right") if isinstance(a, Line2D) and a.get_marker() == "o"
    ]
    assert np.array_equal(points.get_ydata(), mc.values[found])

    (mesh,) = by_gid(ax, "heatmap")
    expected = analysis.extreme_alignment(cube, "mu", "right").sel(loss="square").mean("trial")
    np.testing.assert_allclose(mesh.get_array().reshape(5, 2), expected.transpose("signal", "c").values)


def test_phase_diagram_cells_have_edges_at_the_mid_points(cube_from_yaml: Callable[[str], Path]) -> None:
    cube = open_cube(cube_from_yaml(UNEVEN))
    (ax,) = panels(plots.phase_diagram(cube, loss="square"))
    assert ax.get_xscale() == "log"  # c = 0.25, 0.5, 1: geometric
    (mesh,) = [a for a in ax.get_children() if isinstance(a, QuadMesh)]
    corners = mesh.get_coordinates()  # (signal edges, c edges, 2)
    assert np.allclose(corners[0, :, 0], [0.25 / 2**0.5, 0.25 * 2**0.5, 0.5 * 2**0.5, 2**0.5])
    assert np.allclose(corners[:, 0, 1], [-0.25, 0.25, 1.25, 2.75])


def test_phase_diagram_of_one_loss_has_one_panel(linear: Path) -> None:
    figure = plots.phase_diagram(open_cube(linear), loss="square", var="gap", side="right")
    (ax,) = panels(figure)
    assert ax.get_title() == "square: right gap"
    assert len(figure.axes) == 2  # and the colour bar


def test_spectrum_shows_the_pooled_eigenvalues_and_the_theory(linear: Path, tmp_path: Path) -> None:
    cube = open_cube(linear)
    figure = plots.spectrum(cube, c=0.5, loss="square", signal=1.75, mp_fit=True, bins=40)
    (ax,) = figure.axes
    point = cube.sel(c=0.5, loss="square", signal=1.75).load()
    eigenvalues = point["eigenvalues"].values.ravel()
    low, high = ax.get_xlim()
    (bars,) = [a for a in by_gid(ax, "histogram") if isinstance(a, StepPatch)]
    heights, edges, _ = bars.get_data()
    assert len(heights) == 40
    # Normalised by every eigenvalue: the area is the fraction inside the view.
    inside = np.mean((eigenvalues >= edges[0]) & (eigenvalues <= edges[-1]))
    assert np.sum(heights * np.diff(edges)) == pytest.approx(inside)
    (density,) = by_gid(ax, "theory-density")
    assert np.array_equal(density.get_xdata(), point["density_x"].values)
    (spikes,) = by_gid(ax, "spikes")
    expected = point["spike"].values[np.isfinite(point["spike"].values)]
    assert np.array_equal(spikes.get_xdata(), expected) and low < expected[0] < high
    assert [line.get_xdata()[0] for line in by_gid(ax, "edges")] == [
        float(point["edge_left"]),
        float(point["edge_right"]),
    ]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(text.startswith("Marchenko–Pastur fit") and "KS = " in text for text in legend)
    outside = int(np.sum((eigenvalues < low) | (eigenvalues > high)))
    assert f"600 eigenvalues from 3 trials; {outside} outside" in ax.get_title()
    plots.save(figure, tmp_path / "spectrum.png")
    assert_image(tmp_path / "spectrum.png")


def test_spectrum_of_an_unbounded_law_keeps_the_bulk_in_view(logistic: Path) -> None:
    cube = open_cube(logistic)
    (ax,) = plots.spectrum(cube, c=0.5, loss="exponential", signal=3.0).axes
    point = cube.sel(c=0.5, loss="exponential", signal=3.0).load()
    # The theory's abscissae reach hundreds of bulk widths out; the view stays near the bulk.
    assert ax.get_xlim()[1] < np.nanmax(point["density_x"].values) / 10
    assert by_gid(ax, "spikes") == []  # none predicted
    assert "right: +∞" in " ".join(t.get_text() for t in ax.get_legend().get_texts())


def test_alignment_draws_the_curve_and_the_boundary(linear: Path, tmp_path: Path) -> None:
    cube = open_cube(linear)
    figure = plots.alignment(cube, loss="square", c=0.5)
    (ax,) = figure.axes
    curve = analysis.alignment_curve(cube, "square", 0.5)
    (mc,) = [a for a in by_gid(ax, "mc") if isinstance(a, Line2D) and a.get_marker() == "o"]
    np.testing.assert_allclose(mc.get_ydata(), curve["mc_mean"].values)
    (line,) = by_gid(ax, "boundary-theory")
    assert line.get_xdata()[0] == pytest.approx(0.5**0.25, rel=1e-6)  # ‖μ‖² = √c
    # The theory curve: the grid values, and 0 at the boundary, where the spike is born.
    (theory,) = by_gid(ax, "theory")
    at_grid = np.isin(theory.get_xdata(), curve["signal"].values)
    np.testing.assert_allclose(theory.get_ydata()[at_grid], curve["theory"].values)
    np.testing.assert_allclose(theory.get_xdata()[~at_grid], [0.5**0.25], rtol=1e-6)
    assert theory.get_ydata()[~at_grid].tolist() == [0.0]
    assert ax.get_ylabel() == "cos²(top eigenvector, μ)"
    plots.save(figure, tmp_path / "alignment.pdf")
    assert_image(tmp_path / "alignment.pdf")


def test_alignment_of_a_loss_without_spikes_says_so(logistic: Path) -> None:
    (ax,) = plots.alignment(open_cube(logistic), loss="exponential", c=0.5).axes
    assert "no spikes in theory" in ax.get_title()
    assert by_gid(ax, "boundary-theory") == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ds: plots.phase_diagram(ds, loss="hinge"), "loss: 'hinge' is not a loss of the cube"),
        (lambda ds: plots.phase_diagram(ds, var="spike"), "var: must be one of align, gap"),
        (lambda ds: plots.alignment(ds, loss="square", c=0.3), "c: 0.3 is not a value of the grid"),
        (lambda ds: plots.alignment(ds, loss="square", c=0.5, target="x"), "target: must be one of"),
        (
            lambda ds: plots.spectrum(ds, c=0.5, loss="square", signal=1.75, bins=0),
            "bins: must be an integer",
        ),
    ],
)
def test_bad_arguments_raise_plot_error(
    call: Callable[[xr.Dataset], Figure], message: str, linear: Path
) -> None:
    with pytest.raises(plots.PlotError, match=f"^{message}"):
        call(open_cube(linear))


# ----------------------------------------------------------------------------------------------
# save, threads, no pyplot
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["figure.svg", "figure", "figure.png.txt"])
def test_save_refuses_other_suffixes_and_writes_nothing(name: str, tmp_path: Path) -> None:
    with pytest.raises(plots.PlotError, match=r"use \.png or \.pdf"):
        plots.save(Figure(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_missing_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        plots.save(Figure(), tmp_path / "absent" / "figure.png")
    assert list(tmp_path.iterdir()) == []


def test_figures_are_drawn_in_threads(linear: Path, tmp_path: Path) -> None:
    cube = open_cube(linear).load()

    def draw(signal: float) -> Path:
        path = tmp_path / f"spectrum-{signal}.png"
        plots.save(plots.spectrum(cube, c=0.25, loss="square", signal=signal), path)
        return path

    with ThreadPoolExecutor(max_workers=3) as pool:
        for path in pool.map(draw, [0.25, 1.0, 1.75]):
            assert_image(path)


def test_plots_never_load_pyplot() -> None:
    # pyplot's global figure manager is what makes figures unsafe in threads and headless runs.
    code = "import sys, pipeline.plots, pipeline.cli; sys.exit('matplotlib.pyplot' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ----------------------------------------------------------------------------------------------
# Lanczos cubes: the same figures from the quadrature and the extreme Ritz values
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lanczos(lanczos_cube: Path) -> Path:
    return lanczos_cube


def test_spectrum_of_a_lanczos_cube_draws_its_quadrature_density(lanczos: Path, tmp_path: Path) -> None:
    cube = open_cube(lanczos)
    (ax,) = plots.spectrum(cube, c=2.0, loss="logistic", signal=2.0, mp_fit=True).axes
    point = cube.sel(c=2.0, loss="logistic", signal=2.0).load()
    assert by_gid(ax, "histogram") == []
    (curve,) = by_gid(ax, "mc-density")
    assert np.array_equal(curve.get_xdata(), point["density_x"].values)
    np.testing.assert_allclose(curve.get_ydata(), point["mc_density"].mean("trial").values, rtol=1e-12)
    assert by_gid(ax, "theory-density") and by_gid(ax, "atom") and by_gid(ax, "mp-fit")
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    # The Monte Carlo mass at 0 is the quadrature's, the mean of the trials' mc_atom_zero.
    share = point["mc_atom_zero"].mean().item()
    assert any(text.startswith("atom at 0: 0.5 (MC ") and f"{share:.3g})" in text for text in legend)
    assert "quadrature of 320 nodes from 2 trials" in ax.get_title()
    # The bulk, the atom and the spike are in view.
    low, high = ax.get_xlim()
    assert low < 0.0 and high > np.nanmax(point["spike"].values) > point["edge_right"].item()


@pytest.mark.parametrize(
    "arguments",
    [
        ["spectrum", "--sel", "c=2", "loss=logistic", "signal=2", "--mp-fit"],
        ["spectrum", "--sel", "c=0.5", "loss=exponential", "signal=0"],
        ["phase-diagram"],
        ["alignment", "--loss", "logistic", "--c", "0.5"],
    ],
    ids=["spectrum", "spectrum unbounded", "phase-diagram", "alignment"],
)
def test_plot_command_draws_a_lanczos_cube(
    arguments: list[str], lanczos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figure.png"
    assert main(["plot", str(lanczos), *arguments, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert_image(out)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["spectrum", "--sel", "c=1", "loss=logistic", "signal=2"], "--sel c=1: not a value of c"),
        (["spectrum", "--sel", "c=2", "loss=logistic", "signal=2", "--bins", "0"], "--bins 0: must"),
        (["alignment", "--loss", "square", "--c", "0.5"], "--loss square: not a loss"),
    ],
)
def test_bad_plot_of_a_lanczos_cube_is_exit_2(
    arguments: list[str], message: str, lanczos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plot", str(lanczos), *arguments, "-o", str(tmp_path / "figure.png")]) == 2
    captured = capsys.readouterr()
    assert only_line(captured.err).startswith(f"hessweep: {message}")
    assert list(tmp_path.iterdir()) == []


def test_phase_diagram_of_a_lanczos_cube_colours_the_ritz_extremes(lanczos: Path) -> None:
    cube = open_cube(lanczos)
    # The left gap: at c = 2 from the smallest quadrature node beyond the atom at 0.
    logistic, _ = panels(plots.phase_diagram(cube, var="gap", side="left"))
    (mesh,) = by_gid(logistic, "heatmap")
    expected = analysis.extreme_gap(cube, "left").sel(loss="logistic").mean("trial")
    np.testing.assert_allclose(mesh.get_array().reshape(2, 2), expected.transpose("signal", "c").values)
    (ax,) = plots.alignment(cube, loss="logistic", c=2.0).axes
    curve = analysis.alignment_curve(cube, "logistic", 2.0)
    (mc,) = [a for a in by_gid(ax, "mc") if isinstance(a, Line2D) and a.get_marker() == "o"]
    np.testing.assert_allclose(mc.get_ydata(), curve["mc_mean"].values)
