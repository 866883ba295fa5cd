"""The GLM family (``shared/theory/glm.md``): its cube, a cell's theory solves and Monte Carlo draws.

The reference layout of ``shared/DESIGN.md``:

* point dimensions ``c``, ``loss``, ``signal``, ``trial``; a cell is ``(c, signal)`` (every loss and
  trial of it), so that one Monte Carlo draw serves every loss of its point;
* dimensions ``eig`` or ``node`` (below), ``x`` (theory grid index), ``k`` (``2K`` extreme
  eigen-pairs: bottom ``0 … K−1`` then top ``0 … K−1``, with the coordinates ``side`` =
  ``"bottom"``/``"top"`` and ``rank``, 0 = most extreme), ``target`` (``mu``, ``w_star``, ``w``)
  and ``spike_index`` (at most :data:`MAX_SPIKES` predicted spikes, ascending, NaN padded);
* Monte Carlo variables ``mc_align``, ``mc_negative_fraction`` and, by ``montecarlo.method`` (the
  ``montecarlo_method`` attribute): ``dense``, ``eigenvalues`` (dimension ``eig``, ``0 … p−1``);
  ``lanczos``, the quadrature ``mc_nodes`` and ``mc_weights`` (dimension ``node``,
  ``probes × steps``), ``mc_density`` (on the theory's ``density_x``), ``mc_extreme`` and
  ``mc_residual`` (the extreme Ritz values and residuals, along ``k`` as ``mc_align``) and
  ``mc_atom_zero``;
* theory variables ``density``, ``density_x``, ``edge_left``, ``edge_right``, ``bulk_count`` (the
  number of disjoint intervals of the support), ``spike``, ``spike_align``, ``atom_zero``,
  ``negative_fraction``, ``mass``, ``converged``, ``residual``, ``spikes_defined``, ``note``.

A point ``(loss, trial)`` is complete when the theory of its loss converged and its trial's draw
was analysed under its loss; a theory that did not converge is written (for inspection) but its
points fail with ``theory: did not converge (mass …, residual …): <note>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline import lanczos, montecarlo, theory
from pipeline.families.base import (
    STRING,
    CellData,
    CellFailure,
    Family,
    Layout,
    Part,
    Problem,
    Variable,
    attempt,
    trial_parts,
    trial_results,
)
from pipeline.lanczos import LanczosResult
from pipeline.montecarlo import MonteCarloResult
from pipeline.scenario import TARGETS
from pipeline.theory import TheoryResult

__all__ = ["MAX_SPIKES", "GLMFamily", "cell_data"]

#: Most predicted spikes stored per point (the rank of the low-rank part of the Hessian's mean).
MAX_SPIKES = 3

_SIDES = ("bottom", "top")
_POINT = ("c", "loss", "signal", "trial")
_THEORY = ("c", "loss", "signal")
_F64, _BOOL = np.dtype(np.float64), np.dtype(np.bool_)
_COMMON = {
    "mc_align": Variable(
        (*_POINT, "k", "target"),
        _F64,
        "squared cosine of the k-th extreme Monte Carlo eigenvector with the unit target",
    ),
    "mc_negative_fraction": Variable(
        _POINT, _F64, "fraction of the Monte Carlo eigenvalues below -p·eps·max|λ|"
    ),
    "density": Variable((*_THEORY, "x"), _F64, "limiting density of the bulk"),
    "density_x": Variable((*_THEORY, "x"), _F64, "abscissae of the density"),
    "edge_left": Variable(_THEORY, _F64, "leftmost edge of the bulk support (-inf if unbounded)"),
    "edge_right": Variable(_THEORY, _F64, "rightmost edge of the bulk support (+inf if unbounded)"),
    "bulk_count": Variable(
        _THEORY,
        np.dtype(np.int16),
        "number of disjoint intervals (bulks) of the support (0 where no theory result)",
    ),
    "spike": Variable(
        (*_THEORY, "spike_index"), _F64, "predicted isolated eigenvalues, ascending, NaN padded"
    ),
    "spike_align": Variable(
        (*_THEORY, "spike_index", "target"),
        _F64,
        "predicted squared cosine of each spike's eigenvector with the unit target",
    ),
    "atom_zero": Variable(_THEORY, _F64, "mass of the limiting spectrum at 0"),
    "negative_fraction": Variable(_THEORY, _F64, "mass of the limiting spectrum below 0"),
    "mass": Variable(_THEORY, _F64, "integral of the density plus the atom at 0"),
    "converged": Variable(_THEORY, _BOOL, "the theory's solver converged everywhere"),
    "residual": Variable(_THEORY, _F64, "largest relative residual of the fixed-point equation"),
    "spikes_defined": Variable(_THEORY, _BOOL, "the spike theorem applies (bounded curvature law)"),
    "note": Variable(_THEORY, STRING, "the theory's remark on this point"),
}
# The Monte Carlo variables that depend on the method (`montecarlo.method` of the sweep).
_BY_METHOD = {
    "dense": {"eigenvalues": Variable((*_POINT, "eig"), _F64, "all Monte Carlo eigenvalues, ascending")},
    "lanczos": {
        "mc_nodes": Variable(
            (*_POINT, "node"),
            _F64,
            "Lanczos quadrature nodes (Ritz values) of the spectral measure, ascending, NaN padded",
        ),
        "mc_weights": Variable((*_POINT, "node"), _F64, "Lanczos quadrature weights (sum 1), NaN padded"),
        "mc_density": Variable(
            (*_POINT, "x"),
            _F64,
            "Monte Carlo density (Lanczos quadrature, smoothed) at density_x, atom at 0 left out",
        ),
        "mc_extreme": Variable(
            (*_POINT, "k"),
            _F64,
            "extreme Ritz values: bottom (smallest first) then top (largest first), as mc_align",
        ),
        "mc_residual": Variable(
            (*_POINT, "k"), _F64, "Ritz residual |Hu - θu| / max|θ| of each extreme pair"
        ),
        "mc_atom_zero": Variable(
            _POINT, _F64, "quadrature weight of the Ritz values at 0 (within the zero tolerance)"
        ),
    },
}

# A draw cheaper than this (a few milliseconds) shares one part with the other trials of its cell.
_BATCH_FLOPS = 3e7
# One-core costs of a cell's parts, for batching only (a factor 2 off only halves or doubles a
# batch), measured on tiny to p = 800 sweeps: a theory solve costs a fixed part (its adaptive grid
# and spike scan) and a part per abscissa (0.02-0.06 s at 32-64 points, 0.1-0.2 s at 400); a draw
# costs its Python calls plus its BLAS work at about 1e10 flop/s; a cell's write 0.05-0.07 s.
_SOLVE_SECONDS = 0.05
_SOLVE_SECONDS_PER_POINT = 2.5e-4
_DRAW_SECONDS = 2e-3
_FLOPS_PER_SECOND = 1e10
_WRITE_SECONDS = 0.06


class GLMFamily(Family):
    """The GLM family: :class:`~pipeline.sweep.SweepSpec` sweeps over ``(c, loss, signal, trial)``."""

    name = "glm"

    def parse(self, data: Any, *, source_text: str | None = None) -> Any:
        from pipeline.sweep import SweepSpec

        return SweepSpec.from_dict(data, source_text=source_text)

    def layout(self, spec: Any) -> Layout:
        n_c, n_loss, n_signal, trials = spec.shape
        options = spec.montecarlo
        sizes = {"c": n_c, "loss": n_loss, "signal": n_signal, "trial": trials}
        if options.method == "dense":
            sizes["eig"] = spec.p
        else:
            sizes["node"] = options.probes * options.steps
        sizes.update(x=spec.theory.points, k=2 * options.k, target=len(TARGETS), spike_index=MAX_SPIKES)
        k = options.k
        coords: dict[str, tuple[str, np.ndarray]] = {
            "c": ("c", np.array(spec.grid.c, dtype=np.float64)),
            "loss": ("loss", np.array(spec.grid.loss, dtype=STRING)),
            "signal": ("signal", np.array(spec.grid.signal, dtype=np.float64)),
            "trial": ("trial", np.arange(trials, dtype=np.int64)),
            **{dim: (dim, np.arange(sizes[dim], dtype=np.int64)) for dim in ("eig", "node") if dim in sizes},
            "x": ("x", np.arange(spec.theory.points, dtype=np.int64)),
            "k": ("k", np.arange(2 * k, dtype=np.int64)),
            "side": ("k", np.array([_SIDES[0]] * k + [_SIDES[1]] * k, dtype=STRING)),
            "rank": ("k", np.concatenate([np.arange(k), np.arange(k)]).astype(np.int64)),
            "target": ("target", np.array(TARGETS, dtype=STRING)),
            "spike_index": ("spike_index", np.arange(MAX_SPIKES, dtype=np.int64)),
        }
        return Layout(
            point_dims=_POINT,
            cell_dims=("c", "signal"),
            sizes=sizes,
            coords=coords,
            variables={**_BY_METHOD[options.method], **_COMMON},
            attrs={"montecarlo_method": options.method},
        )

    def parts(self, spec: Any, cell: tuple[int, ...]) -> list[Part]:
        i_c, _ = cell
        _, n_loss, _, trials = spec.shape
        # Cheap draws go in one part per cell, so that the per-task overhead of a scheduler
        # (about a millisecond) stays small beside the work; others get a part per trial.
        per_part = trials if _draw_flops(spec, i_c) < _BATCH_FLOPS else 1
        return [("theory", i_loss) for i_loss in range(n_loss)] + trial_parts("montecarlo", trials, per_part)

    def part_name(self, spec: Any, cell: tuple[int, ...], part: Part) -> str:
        i_c, i_signal = cell
        if part[0] == "theory":
            return f"theory at c[{i_c}], loss[{part[1]}], signal[{i_signal}]"
        return f"Monte Carlo at c[{i_c}], signal[{i_signal}], trials {part[1]}..{int(part[2]) - 1}"

    def compute(self, spec: Any, cell: tuple[int, ...], part: Part, attempts: int) -> Any:
        i_c, i_signal = cell
        if part[0] == "theory":
            return theory.solve(spec.scenario(i_c, int(part[1]), i_signal), points=spec.theory.points)
        first, last = int(part[1]), int(part[2])
        return [draw_and_analyse(spec, i_c, i_signal, trial, attempts) for trial in range(first, last)]

    def assemble(self, spec: Any, cell: tuple[int, ...], results: Sequence[Any]) -> CellData:
        n_loss = spec.shape[1]
        solved = list(results[:n_loss])
        parts = self.parts(spec, cell)[n_loss:]
        names = [self.part_name(spec, cell, part) for part in parts]
        drawn = trial_results(parts, results[n_loss:], names)
        return cell_data(spec, cell, solved, drawn)

    def cell_seconds(self, spec: Any, cell: tuple[int, ...]) -> float:
        _, n_loss, _, trials = spec.shape
        solve = _SOLVE_SECONDS + _SOLVE_SECONDS_PER_POINT * spec.theory.points
        draw = _DRAW_SECONDS + _draw_flops(spec, cell[0]) / _FLOPS_PER_SECOND
        return n_loss * solve + trials * draw + _WRITE_SECONDS

    def problems(self, spec: Any, read: Callable[[str], np.ndarray]) -> list[Problem]:
        # Theory variables have no trial axis: a problem there is every trial's problem.
        trials = spec.trials
        found = _montecarlo_problems(read, spec.montecarlo.method)
        found.append(("done, but its theory did not converge", ~read("converged")))
        found += _theory_problems(read)
        return [
            (what, mask if mask.ndim == 4 else np.repeat(mask[..., None], trials, -1)) for what, mask in found
        ]

    def describe(self, spec: Any) -> list[str]:
        n_c, n_loss, n_signal, trials = spec.shape
        work = spec.work_estimate()
        theory_tasks, mc_tasks, writers = work["theory_solves"], work["monte_carlo_draws"], n_c * n_signal
        return [
            f"grid: {n_c} c × {n_loss} loss × {n_signal} signal × {trials} trials, p = {spec.p}",
            f"points: {work['points']} (c × loss × signal), {work['points'] * trials} with trials",
            f"tasks: {theory_tasks + mc_tasks + writers} "
            f"({theory_tasks} theory, {mc_tasks} Monte Carlo, {writers} cell writes)",
            f"work: {work['theory_solves']} theory solves of {spec.theory.points} points, "
            f"{work['monte_carlo_draws']} Monte Carlo draws × {work['losses_per_draw']} losses, "
            f"about {work['monte_carlo_flops']:.3g} flops",
            f"memory: about {work['monte_carlo_bytes'] / 1e9:.3g} GB per Monte Carlo draw "
            f"(method {spec.montecarlo.method})",
        ]


def _draw_flops(spec: Any, i_c: int) -> float:
    """Rough flops of one draw analysed under every loss (:meth:`SweepSpec.draw_flops`)."""
    return float(spec.shape[1] * spec.draw_flops(i_c))


def draw_and_analyse(
    spec: Any, i_c: int, i_signal: int, trial: int, attempts: int
) -> list[MonteCarloResult | LanczosResult | CellFailure] | CellFailure:
    """One Monte Carlo draw at ``(i_c, i_signal, trial)``, analysed under every loss, each tried
    up to ``attempts`` times.

    Returns one result per loss, in loss order, a loss whose analysis failed as a
    :class:`CellFailure`; or one :class:`CellFailure` if the draw itself failed.  The draw depends
    only on the seed and the point's geometry (not on the loss), so a retry draws the same numbers.
    """
    where = f"Monte Carlo at c[{i_c}], signal[{i_signal}], trial {trial}"
    options = spec.montecarlo
    seed = spec.seed_for(i_c, i_signal, trial)
    first = spec.scenario(i_c, 0, i_signal)
    analyse: Callable[[int], Callable[[], MonteCarloResult | LanczosResult]]
    if options.method == "lanczos":
        features = attempt(
            where,
            attempts,
            lambda: lanczos.draw(first, spec.p, seed, dtype=options.dtype, memory=options.memory_gb * 1e9),
        )
        if isinstance(features, CellFailure):
            return features
        blocks: lanczos.FeatureBlocks = features

        def analyse(i_loss: int) -> Callable[[], LanczosResult]:
            scenario = spec.scenario(i_c, i_loss, i_signal)
            return lambda: lanczos.analyse(
                blocks, scenario, seed, k=options.k, probes=options.probes, steps=options.steps
            )
    else:
        drawn = attempt(where, attempts, lambda: montecarlo.draw(first, spec.p, seed))
        if isinstance(drawn, CellFailure):
            return drawn
        draw: montecarlo.Draw = drawn

        def analyse(i_loss: int) -> Callable[[], MonteCarloResult]:
            scenario = spec.scenario(i_c, i_loss, i_signal)
            return lambda: montecarlo.analyse(draw, scenario, k=options.k)

    return [attempt(f"{where}, loss[{i_l}]", attempts, analyse(i_l)) for i_l in range(spec.shape[1])]


def cell_data(
    spec: Any,
    cell: tuple[int, ...],
    theory: Sequence[TheoryResult | CellFailure],
    montecarlo: Sequence[Sequence[MonteCarloResult | LanczosResult | CellFailure] | CellFailure],
) -> CellData:
    """A cell's blocks from its theory (one entry per loss) and Monte Carlo (one entry per trial).

    Parameters
    ----------
    spec : SweepSpec
    cell : (int, int)
        ``(i_c, i_signal)``.
    theory : sequence
        One entry per loss (in ``spec.grid.loss`` order): a :class:`TheoryResult` with
        ``spec.theory.points`` abscissae and at most :data:`MAX_SPIKES` spikes, or a
        :class:`CellFailure`.
    montecarlo : sequence
        One entry per trial: a sequence of one result (``p`` eigenvalues, ``spec.montecarlo.k``
        alignments per side and target) or :class:`CellFailure` per loss, or one
        :class:`CellFailure` for the whole trial (its draw failed).

    Returns
    -------
    CellData
        A point ``(loss, trial)`` fails if the theory of its loss failed or did not converge, the
        Monte Carlo draw of its trial or that draw's analysis under its loss failed: its error
        says why (``theory: …``, ``montecarlo: …``), and whatever part succeeded is still in the
        arrays.

    Raises
    ------
    TypeError, ValueError
        For results of the wrong kind, number or shape.
    """
    _, n_loss, _, trials = spec.shape
    i_c, i_signal = cell
    k = spec.montecarlo.k
    if len(theory) != n_loss:
        raise ValueError(f"theory: expected {n_loss} results (one per loss), got {len(theory)}")
    if len(montecarlo) != trials:
        raise ValueError(f"montecarlo: expected {trials} entries (one per trial), got {len(montecarlo)}")
    for i_loss, outcome in enumerate(theory):
        _check_theory(outcome, spec, f"theory[{i_loss}]")
    per_trial: list[list[MonteCarloResult | LanczosResult | CellFailure]] = []
    for trial, entry in enumerate(montecarlo):
        if isinstance(entry, CellFailure):
            per_trial.append([entry] * n_loss)
            continue
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
            raise TypeError(
                f"montecarlo[{trial}]: expected a list of results per loss or a CellFailure, "
                f"not {type(entry).__name__}"
            )
        if len(entry) != n_loss:
            raise ValueError(
                f"montecarlo[{trial}]: expected {n_loss} results (one per loss), got {len(entry)}"
            )
        for i_loss, sample in enumerate(entry):
            _check_montecarlo(sample, spec, f"montecarlo[{trial}][{i_loss}]")
        per_trial.append(list(entry))

    layout = GLMFamily().layout(spec)
    arrays = {name: layout.empty(name) for name in layout.variables}
    errors = [["" for _ in range(trials)] for _ in range(n_loss)]
    messages: list[str] = []

    for i_loss, result in enumerate(theory):
        at = (0, i_loss, 0)
        if isinstance(result, CellFailure):
            messages.append(result.message)
            for trial in range(trials):
                errors[i_loss][trial] = f"theory: {result.message}"
            continue
        n_spikes = len(result.spikes)
        arrays["density"][at] = result.density
        arrays["density_x"][at] = result.x
        arrays["edge_left"][at] = result.edge_left
        arrays["edge_right"][at] = result.edge_right
        arrays["bulk_count"][at] = result.edges.shape[0]
        arrays["spike"][0, i_loss, 0, :n_spikes] = result.spikes
        for i_target, target in enumerate(TARGETS):
            arrays["spike_align"][0, i_loss, 0, :n_spikes, i_target] = result.spike_align[target]
        arrays["atom_zero"][at] = result.atom_zero
        arrays["negative_fraction"][at] = result.negative_fraction
        arrays["mass"][at] = result.mass
        arrays["converged"][at] = result.converged
        arrays["residual"][at] = result.residual
        arrays["spikes_defined"][at] = result.spikes_defined
        arrays["note"][at] = result.note
        if not result.converged:
            # Written for inspection, never marked done.
            messages.append(f"theory at c[{i_c}], loss[{i_loss}], signal[{i_signal}]: did not converge")
            for trial in range(trials):
                errors[i_loss][trial] = f"theory: {_unconverged(result)}"

    for trial, results in enumerate(per_trial):
        if isinstance(montecarlo[trial], CellFailure):
            messages.append(results[0].message)  # type: ignore[union-attr]
        for i_loss, mc in enumerate(results):
            point = (0, i_loss, 0, trial)
            if isinstance(mc, CellFailure):
                if not isinstance(montecarlo[trial], CellFailure):
                    messages.append(mc.message)
                message = f"montecarlo: {mc.message}"
                errors[i_loss][trial] = (
                    f"{errors[i_loss][trial]}; {message}" if errors[i_loss][trial] else message
                )
                continue
            if isinstance(mc, MonteCarloResult):
                arrays["eigenvalues"][point] = mc.eigenvalues
            else:
                _put_lanczos(arrays, point, mc, theory[i_loss])
            for i_target, target in enumerate(TARGETS):
                arrays["mc_align"][0, i_loss, 0, trial, :k, i_target] = mc.align_bottom[target]
                arrays["mc_align"][0, i_loss, 0, trial, k:, i_target] = mc.align_top[target]
            arrays["mc_negative_fraction"][point] = mc.negative_fraction
    point_errors = np.array(errors, dtype=STRING).reshape(1, n_loss, 1, trials)
    return CellData(arrays=arrays, errors=point_errors, messages=tuple(messages))


def _unconverged(result: TheoryResult) -> str:
    """Why a theory result that did not converge is not trusted, for its points' ``error``."""
    why = f"did not converge (mass {result.mass:.6g}, residual {result.residual:.3g})"
    return f"{why}: {result.note}" if result.note else why


def _put_lanczos(
    arrays: dict[str, np.ndarray],
    point: tuple[int, int, int, int],
    result: LanczosResult,
    theory: TheoryResult | CellFailure,
) -> None:
    """A matrix-free result's variables at ``point``; its density on the theory's abscissae."""
    size = result.nodes.size
    arrays["mc_nodes"][(*point, slice(0, size))] = result.nodes
    arrays["mc_weights"][(*point, slice(0, size))] = result.weights
    if isinstance(theory, TheoryResult):
        arrays["mc_density"][point] = result.density(theory.x)
    arrays["mc_extreme"][point] = np.concatenate([result.bottom, result.top])
    arrays["mc_residual"][point] = np.concatenate([result.residual_bottom, result.residual_top])
    arrays["mc_atom_zero"][point] = result.atom_zero


def _check_theory(result: object, spec: Any, where: str) -> None:
    if isinstance(result, CellFailure):
        return
    if not isinstance(result, TheoryResult):
        raise TypeError(f"{where}: expected a TheoryResult or a CellFailure, not {type(result).__name__}")
    points = spec.theory.points
    for name in ("x", "density"):
        shape = np.shape(getattr(result, name))
        if shape != (points,):
            raise ValueError(f"{where}.{name}: expected shape ({points},) (theory.points), got {shape}")
    spikes = np.shape(result.spikes)
    if len(spikes) != 1 or spikes[0] > MAX_SPIKES:
        raise ValueError(
            f"{where}.spikes: expected at most {MAX_SPIKES} spikes in a 1-d array, got shape {spikes}"
        )
    for target in TARGETS:
        if target not in result.spike_align:
            raise ValueError(f"{where}.spike_align: no entry for target {target!r}")
        shape = np.shape(result.spike_align[target])
        if shape != spikes:
            raise ValueError(
                f"{where}.spike_align[{target!r}]: expected shape {spikes} (one per spike), got {shape}"
            )
    if np.ndim(result.edges) != 2 or np.shape(result.edges)[1:] != (2,) or len(result.edges) == 0:
        raise ValueError(f"{where}.edges: expected shape (n_bulks >= 1, 2), got {np.shape(result.edges)}")


def _check_montecarlo(result: object, spec: Any, where: str) -> None:
    if isinstance(result, CellFailure):
        return
    options = spec.montecarlo
    expected = MonteCarloResult if options.method == "dense" else LanczosResult
    if not isinstance(result, expected):
        raise TypeError(
            f"{where}: expected a {expected.__name__} (montecarlo.method: {options.method}) or a "
            f"CellFailure, not {type(result).__name__}"
        )
    if isinstance(result, MonteCarloResult):
        shape = np.shape(result.eigenvalues)
        if shape != (spec.p,):
            raise ValueError(f"{where}.eigenvalues: expected shape ({spec.p},) (p), got {shape}")
    elif isinstance(result, LanczosResult) and result.nodes.size > options.probes * options.steps:
        raise ValueError(
            f"{where}.nodes: expected at most probes × steps = {options.probes * options.steps}, "
            f"got {result.nodes.size}"
        )
    k = options.k
    for side in ("align_bottom", "align_top"):
        alignments = getattr(result, side)
        for target in TARGETS:
            if target not in alignments:
                raise ValueError(f"{where}.{side}: no entry for target {target!r}")
            shape = np.shape(alignments[target])
            if shape != (k,):
                raise ValueError(
                    f"{where}.{side}[{target!r}]: expected shape ({k},) (montecarlo.k), got {shape}"
                )


def _montecarlo_problems(read: Callable[[str], np.ndarray], method: str) -> list[Problem]:
    """(problem, mask over (c, loss, signal, trial)) for the Monte Carlo variables."""
    if method == "dense":
        eigenvalues = read("eigenvalues")
        with np.errstate(invalid="ignore"):
            descending = np.any(np.diff(eigenvalues, axis=-1) < 0, axis=-1)
        return [
            ("eigenvalues missing or not finite", ~np.all(np.isfinite(eigenvalues), axis=-1)),
            ("eigenvalues not ascending", descending),
        ]
    nodes = read("mc_nodes")
    weights = read("mc_weights")
    present = ~np.isnan(nodes)
    # NaN padding only after the last node: the present entries form a prefix.
    padded_inside = np.any(~present[..., :-1] & present[..., 1:], axis=-1)
    with np.errstate(invalid="ignore"):
        descending = np.any(np.diff(nodes, axis=-1) < 0, axis=-1)
        bad_weights = np.any(present & ~(weights >= 0), axis=-1)
    total = np.where(present, weights, 0.0).sum(axis=-1)
    return [
        ("quadrature missing", ~present[..., 0]),
        (
            "quadrature nodes not finite, or NaN before the last node",
            padded_inside | np.any(np.isinf(nodes), -1),
        ),
        ("quadrature nodes not ascending", descending),
        ("quadrature weights negative or missing", bad_weights),
        ("quadrature weights do not sum to 1", ~(np.abs(total - 1.0) <= 1e-9)),
        ("extreme Ritz values not finite", ~np.all(np.isfinite(read("mc_extreme")), axis=-1)),
    ]


def _theory_problems(read: Callable[[str], np.ndarray]) -> list[Problem]:
    """(problem, mask over (c, loss, signal)) for the theory variables."""
    x = read("density_x")
    density = read("density")
    with np.errstate(invalid="ignore"):
        unordered = ~np.all(np.diff(x, axis=-1) > 0, axis=-1)
        negative = ~np.all(density >= 0, axis=-1)
    return [
        ("theory abscissae missing, not finite or not increasing", ~np.all(np.isfinite(x), -1) | unordered),
        ("theory density missing, not finite or negative", ~np.all(np.isfinite(density), -1) | negative),
        ("theory mass missing", ~np.isfinite(read("mass"))),
        ("no bulk in the theory result", read("bulk_count") < 1),
        ("theory edges missing", np.isnan(read("edge_left")) | np.isnan(read("edge_right"))),
    ]
