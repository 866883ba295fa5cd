"""Pennington & Bahri's network experiment (``shared/theory/pennington_bahri.md``, Sec. 6.4) as a sweep.

A sweep (``family: pbnet``) runs :func:`pipeline.pbnet.find_critical_point` on the square tanh
network ``ŷ = W₂ tanh(W₁x)`` (width ``n``, ``2n²`` parameters) over a grid of ``φ = 2n/m``, several
runs per ``φ``, and stores the energy, index and Hessian spectrum of every point found::

    family: pbnet
    name: pb_network
    n: 16                  # width n0 = n1 = n2, >= 2 (default 16, the paper's)
    trials: 32             # runs per phi
    seed: 0
    grid:
      phi: [0.0625, 0.125, 0.25]     # > 0, distinct; m = round(2n/phi) samples
    search: {tolerance: 1.0e-6, zero_tolerance: 1.0e-6, init_scale: 1.0,
             max_descent_iterations: 2000, max_j_iterations: 20000}

``search`` is optional, and so is each of its keys: the defaults are
:func:`~pipeline.pbnet.find_critical_point`'s.  Run ``(i_phi, trial)`` is
``find_critical_point(phi, (seed, i_phi, trial), n=n, **search)`` exactly (:func:`search`), so the
cube holds what :func:`pipeline.pbnet.survey` returns, bit for bit with BLAS on one thread (the
runner's workers' setting).

The cube:

* point dimensions ``phi``, ``trial``; a cell is one ``φ`` (its trials);
* dimension ``eig`` (``2n²``); coordinates ``phi``, ``trial``, ``eig`` and ``m`` (samples, on ``phi``);
* variables (:data:`VARIABLES`) on ``(phi, trial)``: ``energy``, ``index`` (α), ``negative``,
  ``nullity``, ``gradient_norm_sq``, ``converged``, ``level``, ``initial_energy``, ``start_energy``,
  ``descent_iterations``, ``j_iterations``, ``cycles``, ``weight_norm``, ``zero_threshold``,
  ``gauss_newton_mean`` (σ = tr H₀ / 2n², the scale of the theory's ε_c) and ``message``; and
  ``eigenvalues`` (all ``2n²``, ascending) on ``(phi, trial, eig)``.

A run whose ``J = ‖∇L‖²`` stays above ``search.tolerance`` is a *result*: the paper discards such
runs, here they are stored with ``converged = False`` and the point is done (select on ``converged``
to reproduce the paper's figure; ``hessweep validate`` and the cube's ``converged_note`` attribute
say so).  A run that raises is tried again and then fails its point, like a failed draw of the
other families.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, ClassVar

import numpy as np
import yaml

from pipeline import pbnet, schema
from pipeline.errors import SweepError
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
from pipeline.pbnet.critical import (
    CONVERGENCE_TOLERANCE,
    CYCLE_ITERATIONS,
    MAX_DESCENT_ITERATIONS,
    MAX_J_ITERATIONS,
    ZERO_TOLERANCE,
)

__all__ = [
    "MAX_ITERATIONS",
    "MAX_RUN_BYTES",
    "MAX_WIDTH",
    "VARIABLES",
    "NetworkRun",
    "PBNetFamily",
    "PBNetGrid",
    "PBNetSpec",
    "SearchOptions",
    "search",
]

#: Widest network (a sanity limit): ``2n² <= 4050`` parameters, the ReLU family's limit of 4096
#: weights.  Every preconditioner cycle diagonalises the ``2n² × 2n²`` Hessian, O(n⁶): 0.1 s at
#: n = 16, so about 50 s at n = 45 and, at up to ``max_j_iterations / 500`` cycles, up to half an
#: hour a run.
MAX_WIDTH = 45
#: Largest estimated memory of one run (:meth:`PBNetSpec.run_bytes`), a sanity limit: a worker of
#: a small machine holds a few GB, and this leaves room for two workers and the scheduler.  The
#: Hessians bound it at n = 45 (0.8 GB); a tiny ``φ`` (many samples) is what exceeds it.
MAX_RUN_BYTES = 10**9
#: Largest cap on the iterations of either phase (a sanity limit): 50 times the default cap on the
#: minimisation of ``J`` (the runs seen needed 3–6·10³ at a saddle); an L-BFGS iteration on ``J`` at
#: n = 16 takes about 1.5 ms (0.3 ms on ``L``), so 10⁶ is up to half an hour of one run.
MAX_ITERATIONS = 10**6

_FAMILY = "pbnet"
_TOP_KEYS = ("family", "name", "n", "trials", "seed", "grid", "search")
_GRID_KEYS = ("phi",)
_SEARCH_KEYS = ("tolerance", "zero_tolerance", "init_scale", "max_descent_iterations", "max_j_iterations")
_DEFAULT_WIDTH = 16

_POINT = ("phi", "trial")
_F64, _BOOL, _I32, _I64 = (np.dtype(t) for t in (np.float64, np.bool_, np.int32, np.int64))
#: The cube's data variables (a contract for the tools that read it).
VARIABLES = {
    "energy": Variable(_POINT, _F64, "epsilon = L/n at the point found"),
    "index": Variable(_POINT, _F64, "alpha: fraction of the 2n² Hessian eigenvalues below -zero_threshold"),
    "negative": Variable(_POINT, _I32, "number of Hessian eigenvalues below -zero_threshold"),
    "nullity": Variable(_POINT, _I32, "number of Hessian eigenvalues within ±zero_threshold"),
    "gradient_norm_sq": Variable(_POINT, _F64, "J = |grad L|² at the point found"),
    "converged": Variable(
        _POINT, _BOOL, "J <= search.tolerance (false: a run the paper discards, stored and done)"
    ),
    "level": Variable(_POINT, _F64, "the loss level drawn, as an energy"),
    "initial_energy": Variable(_POINT, _F64, "energy of the random start"),
    "start_energy": Variable(_POINT, _F64, "energy where the minimisation of J started"),
    "descent_iterations": Variable(_POINT, _I64, "L-BFGS iterations of the descent on L"),
    "j_iterations": Variable(_POINT, _I64, "L-BFGS iterations of the minimisation of J, all cycles"),
    "cycles": Variable(_POINT, _I32, "preconditioner cycles of the minimisation of J"),
    "weight_norm": Variable(_POINT, _F64, "|theta| at the point found"),
    "zero_threshold": Variable(_POINT, _F64, "search.zero_tolerance · max|λ|: the index's threshold"),
    "gauss_newton_mean": Variable(
        _POINT, _F64, "sigma = tr H0 / 2n², mean eigenvalue of the Gauss-Newton part at the point found"
    ),
    "message": Variable(_POINT, STRING, "how the descent and the minimisation of J ended"),
    "eigenvalues": Variable((*_POINT, "eig"), _F64, "all 2n² Hessian eigenvalues, ascending"),
}

# One-core seconds of one run, for the runner's planning and `hessweep validate` (a factor 2 off is
# harmless).  A run is about _ITERATIONS L-BFGS iterations (means 1550 at n = 4, 2750 at n = 6, 3500
# at n = 16), each some Python overhead plus its products (the preconditioner's 4P² flops and the
# network's ~20n²m, memory-bound matrix-vector products), and an eigendecomposition of the Hessian
# every CYCLE_ITERATIONS iterations (0.1 s at P = 512, O(P³)).  Measured with OMP_NUM_THREADS=1 on the
# shared 2-core machine at the paper's φ: n = 4, mean 0.48 s (9 runs, 0.08-1.1 s); n = 6, 1.2 s (6 runs,
# 0.3-2.7 s); n = 16, 4.8 s (12 runs, 0.25-9.3 s).  This model says 0.9, 1.0 and 4.5 s.
_ITERATIONS = 3000
_ITERATION_SECONDS = 3e-4
_FLOPS_PER_SECOND = 2e9
_EIGH_SECONDS = 0.1
_EIGH_PARAMETERS = 512
# Every run is its own part (a task when its cell is split): the cheapest runs take a tenth of a
# second, far above a task's few milliseconds of scheduling, and runs of 0.25-9 s (n = 16) spread
# over the workers one by one rather than in batches that finish unevenly.
_RUNS_PER_PART = 1
# Writing a cell (every variable's chunk, then `done`): 0.05-0.07 s, as for the other families.
_WRITE_SECONDS = 0.06


# ----------------------------------------------------------------------------------------------
# The specification
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PBNetGrid:
    """The axis of a sweep: the ratios ``φ = 2n/m`` (in file order)."""

    phi: tuple[float, ...]


@dataclass(frozen=True)
class SearchOptions:
    """The keyword arguments of :func:`~pipeline.pbnet.find_critical_point` (``search`` in a sweep file).

    Attributes
    ----------
    tolerance : float
        ``J`` at which a run counts as converged, ``0 < ... <= 1e-6`` (the paper's threshold is
        the loosest allowed: already at 10⁻⁶ the index moves by up to 5 of 512 eigenvalues as ``J``
        is pushed to 10⁻¹⁰, see :data:`~pipeline.pbnet.ZERO_TOLERANCE`).
    zero_tolerance : float
        Relative to ``max|λ|``, ``0 <= ... < 1``: eigenvalues within ``±`` it count as zero.
    init_scale : float
        The start's entries are i.i.d. ``N(0, init_scale²/n)``, ``> 0``.
    max_descent_iterations, max_j_iterations : int
        Caps of the two phases, ``0 <= ... <= MAX_ITERATIONS``.
    """

    tolerance: float = CONVERGENCE_TOLERANCE
    zero_tolerance: float = ZERO_TOLERANCE
    init_scale: float = 1.0
    max_descent_iterations: int = MAX_DESCENT_ITERATIONS
    max_j_iterations: int = MAX_J_ITERATIONS


@dataclass(frozen=True)
class PBNetSpec:
    """A validated ``family: pbnet`` sweep; build it with :func:`pipeline.sweep.parse_sweep`.

    The constructor does not validate.  Two specs compare equal when their definitions are equal
    (:meth:`to_dict`), whatever the formatting or comments of their YAML text.

    Attributes
    ----------
    name : str
        Letters, digits, ``-`` and ``_``: it names the store.
    n : int
        Width ``n₀ = n₁ = n₂``, ``2 <= n <= MAX_WIDTH``.
    trials : int
        Runs per ``φ``, ``>= 1``.
    seed : int
        Root of every run's seed, ``>= 0`` (:meth:`seed_for`).
    grid : PBNetGrid
    search : SearchOptions
    source_text : str
        The YAML text the spec was read from, kept for the cube's attributes.
    """

    name: str
    n: int
    trials: int
    seed: int
    grid: PBNetGrid
    search: SearchOptions = field(default_factory=SearchOptions)
    source_text: str = field(default="", compare=False, repr=False)
    #: The family of these sweeps.
    family: ClassVar[str] = _FAMILY

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_phi, trials)``: the cube's points."""
        return len(self.grid.phi), self.trials

    @property
    def parameters(self) -> int:
        """``P = 2n²``, the number of weights and of Hessian eigenvalues of a run."""
        return 2 * self.n**2

    def samples(self, i_phi: int) -> int:
        """``m = round(2n/φ)`` at ``phi[i_phi]`` (:func:`~pipeline.pbnet.draw_problem`'s)."""
        return round(2 * self.n / self.grid.phi[i_phi])

    def seed_for(self, i_phi: int, trial: int) -> tuple[int, int, int]:
        """The key of one run: ``(seed, i_phi, trial)``, :func:`~pipeline.pbnet.survey`'s.

        Grid indices only: a re-run, a resume or another worker count draws the same numbers.

        Raises
        ------
        IndexError
            For an index outside its axis.
        """
        for name, index, size in zip(("i_phi", "trial"), (i_phi, trial), self.shape, strict=True):
            if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < size:
                raise IndexError(f"{name} must be an integer in [0, {size}), not {index!r}")
        return self.seed, int(i_phi), int(trial)

    def run_bytes(self, i_phi: int) -> int:
        """Rough peak memory of one run at ``phi[i_phi]``, in bytes.

        Six dense ``P × P`` matrices at once (the Hessian's two parts and their symmetrised
        copies while it is built; the eigensolver's vectors, workspace and the preconditioner) and
        two ``n² × m`` arrays (the Jacobian factor ``K`` of :func:`~pipeline.pbnet.hessian_parts`
        and a temporary of its shape).
        """
        return 8 * (6 * self.parameters**2 + 2 * self.n**2 * self.samples(i_phi))

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain data in sweep-file form, ``family`` included.

        ``spec_from_dict(spec.to_dict()) == spec``.
        """
        return {
            "family": self.family,
            "name": self.name,
            "n": self.n,
            "trials": self.trials,
            "seed": self.seed,
            "grid": {"phi": list(self.grid.phi)},
            "search": asdict(self.search),
        }

    def differences(self, other: Any) -> list[str]:
        """What differs between two definitions, one ``"path: mine != theirs"`` line per field."""
        return schema.differences(self.to_dict(), other.to_dict())

    @classmethod
    def from_dict(cls, data: Any, *, source_text: str | None = None) -> PBNetSpec:
        """Validate a sweep given as Python data (the parsed YAML document).

        Defaults: ``n: 16``, ``trials: 1``, ``seed: 0``, ``search`` from
        :func:`~pipeline.pbnet.find_critical_point`; ``name`` and ``grid.phi`` are required.

        Raises
        ------
        SweepError
            Naming the YAML path of the first field at fault.

        Examples
        --------
        >>> spec = PBNetSpec.from_dict({"family": "pbnet", "name": "a", "grid": {"phi": [0.25, 0.5]}})
        >>> spec.shape, spec.n, spec.parameters, spec.samples(0), spec.seed_for(1, 0)
        ((2, 1), 16, 512, 128, (0, 1, 0))
        >>> PBNetSpec.from_dict({"family": "pbnet", "name": "a", "grid": {"phi": [0.5]}, "n": 1})
        Traceback (most recent call last):
        ...
        pipeline.errors.SweepError: n: must be >= 2
        """
        spec = _validate(data)
        text = yaml.safe_dump(spec.to_dict(), sort_keys=False) if source_text is None else source_text
        return replace(spec, source_text=text)


def _validate(data: Any) -> PBNetSpec:
    top = schema.document(data, _TOP_KEYS)
    if top.get("family") != _FAMILY:
        raise SweepError(
            "family", f"must be {_FAMILY!r} for this family, not {schema.shown(top.get('family'))}"
        )
    for key in ("name", "grid"):
        if key not in top:
            raise SweepError(key, "is required")
    name = schema.name(top["name"])
    n = schema.integer(top.get("n", _DEFAULT_WIDTH), "n", minimum=2)
    if n > MAX_WIDTH:
        reason = (
            f"must be <= {MAX_WIDTH} (a sanity limit: the Hessian is 2n² × 2n², diagonalised in every "
            "preconditioner cycle)"
        )
        raise SweepError("n", reason)
    trials = schema.integer(top.get("trials", 1), "trials", minimum=1)
    seed = schema.integer(top.get("seed", 0), "seed", minimum=0)
    spec = PBNetSpec(
        name=name, n=n, trials=trials, seed=seed, grid=_grid(top["grid"], trials), search=_search(top)
    )
    for i, phi in enumerate(spec.grid.phi):
        samples = 2 * n / phi  # inf for a subnormal φ
        if math.isfinite(samples) and round(samples) < 1:
            raise SweepError(
                f"grid.phi[{i}]", f"n = {n} at phi = {phi:g} gives m = round(2n/phi) = 0 samples"
            )
        if not math.isfinite(samples) or spec.run_bytes(i) > MAX_RUN_BYTES:
            size = spec.run_bytes(i) / 1e9 if math.isfinite(samples) else math.inf
            raise SweepError(
                f"grid.phi[{i}]",
                f"n = {n} at phi = {phi:g} gives m = round(2n/phi) = {samples:.3g} samples, a run of "
                f"about {size:.3g} GB, more than the sanity limit of {MAX_RUN_BYTES / 1e9:g} GB",
            )
    return spec


def _grid(value: Any, trials: int) -> PBNetGrid:
    grid = schema.mapping(value, "grid", _GRID_KEYS)
    if "phi" not in grid:
        raise SweepError("grid.phi", "is required")
    # The points are counted before the axis is read, so that a huge grid costs nothing to refuse.
    length = schema.axis_length(grid["phi"])
    if length is not None and length * trials > schema.MAX_CELLS:
        reason = f"{length} phi × {trials} trials = {length * trials} points, more than the sanity limit of "
        raise SweepError("grid", f"{reason}{schema.MAX_CELLS}")
    phi = schema.axis(grid["phi"], "grid.phi")
    for i, value_phi in enumerate(phi):
        if value_phi <= 0.0:
            raise SweepError(f"grid.phi[{i}]", "must be > 0")
    return PBNetGrid(phi=phi)


def _search(top: Mapping[str, Any]) -> SearchOptions:
    value = top.get("search")
    options = schema.mapping({} if value is None else value, "search", _SEARCH_KEYS)
    defaults = SearchOptions()
    tolerance = schema.finite(options.get("tolerance", defaults.tolerance), "search.tolerance")
    if not 0.0 < tolerance <= CONVERGENCE_TOLERANCE:
        reason = (
            f"must be > 0 and <= {CONVERGENCE_TOLERANCE:g} (the paper's threshold: a looser one counts as "
            f"critical points the paper discards), not {tolerance:g}"
        )
        raise SweepError("search.tolerance", reason)
    zero = schema.finite(options.get("zero_tolerance", defaults.zero_tolerance), "search.zero_tolerance")
    if not 0.0 <= zero < 1.0:
        reason = f"must be >= 0 and < 1 (relative to max|λ|: at 1 every eigenvalue is zero), not {zero:g}"
        raise SweepError("search.zero_tolerance", reason)
    scale = schema.finite(options.get("init_scale", defaults.init_scale), "search.init_scale")
    if scale <= 0.0:
        raise SweepError("search.init_scale", "must be > 0")
    caps = {}
    for key in ("max_descent_iterations", "max_j_iterations"):
        cap = schema.integer(options.get(key, getattr(defaults, key)), f"search.{key}", minimum=0)
        if cap > MAX_ITERATIONS:
            raise SweepError(f"search.{key}", f"must be <= {MAX_ITERATIONS} (a sanity limit)")
        caps[key] = cap
    return SearchOptions(tolerance=tolerance, zero_tolerance=zero, init_scale=scale, **caps)


# ----------------------------------------------------------------------------------------------
# One run
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NetworkRun:
    """One run: the point found and ``σ = tr H₀ / 2n²`` there (the Gauss–Newton part's mean eigenvalue)."""

    point: pbnet.NetworkCriticalPoint
    gauss_newton_mean: float


def search(spec: PBNetSpec, i_phi: int, trial: int) -> NetworkRun:
    """Run ``(i_phi, trial)``: ``find_critical_point(phi, (seed, i_phi, trial), n=n, **search)``.

    ``σ`` comes from :func:`~pipeline.pbnet.hessian_parts` at the end point, on the run's own data
    (:func:`~pipeline.pbnet.draw_problem` with the same key).
    """
    phi, key = spec.grid.phi[i_phi], spec.seed_for(i_phi, trial)
    options = spec.search
    # Looked up at call time (pbnet.find_critical_point): tests replace it.
    point = pbnet.find_critical_point(phi, key, n=spec.n, **asdict(options))
    problem = pbnet.draw_problem(phi, key, n=spec.n, init_scale=options.init_scale)
    gauss_newton, _ = pbnet.hessian_parts(point.theta, problem.X, problem.Y)
    return NetworkRun(point, float(np.trace(gauss_newton)) / spec.parameters)


def _run_seconds(spec: PBNetSpec, i_phi: int) -> float:
    """The cost model of one run at ``phi[i_phi]`` (see ``_ITERATIONS``)."""
    p, flops = spec.parameters, 4 * spec.parameters**2 + 20 * spec.n**2 * spec.samples(i_phi)
    iteration = _ITERATION_SECONDS + flops / _FLOPS_PER_SECOND
    eigendecomposition = _EIGH_SECONDS * (p / _EIGH_PARAMETERS) ** 3
    return _ITERATIONS * iteration + _ITERATIONS / CYCLE_ITERATIONS * eigendecomposition


# ----------------------------------------------------------------------------------------------
# The family
# ----------------------------------------------------------------------------------------------


class PBNetFamily(Family):
    """The network experiment of Pennington & Bahri: :class:`PBNetSpec` sweeps over ``(phi, trial)``."""

    name = _FAMILY

    def parse(self, data: Mapping[str, Any], *, source_text: str | None = None) -> PBNetSpec:
        return PBNetSpec.from_dict(data, source_text=source_text)

    def layout(self, spec: Any) -> Layout:
        n_phi, trials = spec.shape
        sizes = {"phi": n_phi, "trial": trials, "eig": spec.parameters}
        coords: dict[str, tuple[str | tuple[str, ...], np.ndarray]] = {
            "phi": ("phi", np.array(spec.grid.phi, dtype=np.float64)),
            "trial": ("trial", np.arange(trials, dtype=np.int64)),
            "eig": ("eig", np.arange(spec.parameters, dtype=np.int64)),
            # A coordinate, written once with the cube, not by every cell.
            "m": ("phi", np.array([spec.samples(i) for i in range(n_phi)], dtype=np.int64)),
        }
        options = spec.search
        return Layout(
            point_dims=_POINT,
            cell_dims=("phi",),
            sizes=sizes,
            coords=coords,
            variables=VARIABLES,
            attrs={
                "n": spec.n,
                "parameters": spec.parameters,
                "tolerance": options.tolerance,
                "zero_tolerance": options.zero_tolerance,
                "converged_note": (
                    f"runs whose J stayed above {options.tolerance:g} are stored and done with "
                    "converged = false: the paper discards them, select converged to do the same"
                ),
            },
        )

    def parts(self, spec: Any, cell: tuple[int, ...]) -> list[Part]:
        return trial_parts("search", spec.trials, _RUNS_PER_PART)

    def part_name(self, spec: Any, cell: tuple[int, ...], part: Part) -> str:
        first, last = int(part[1]), int(part[2])
        trials = f"trial {first}" if last == first + 1 else f"trials {first}..{last - 1}"
        return f"search at {_where(spec, cell[0])}, {trials}"

    def compute(self, spec: Any, cell: tuple[int, ...], part: Part, attempts: int) -> Any:
        (i_phi,) = cell
        return [
            attempt(
                f"search at {_where(spec, i_phi)}, trial {trial}",
                attempts,
                partial(search, spec, i_phi, trial),
            )
            for trial in range(int(part[1]), int(part[2]))
        ]

    def assemble(self, spec: Any, cell: tuple[int, ...], results: Sequence[Any]) -> CellData:
        parts = self.parts(spec, cell)
        names = [self.part_name(spec, cell, part) for part in parts]
        runs = trial_results(parts, results, names)
        return _cell_data(spec, cell, runs)

    def cell_seconds(self, spec: Any, cell: tuple[int, ...]) -> float:
        return spec.trials * _run_seconds(spec, cell[0]) + _WRITE_SECONDS

    def problems(self, spec: Any, read: Callable[[str], np.ndarray]) -> list[Problem]:
        return _problems(spec, read)

    def remarks(self, spec: Any, read: Callable[[str], np.ndarray]) -> list[Problem]:
        what = (
            f"J = ‖∇L‖² stayed above {spec.search.tolerance:g}: kept with converged = false "
            "(the paper discards such runs)"
        )
        return [(what, ~read("converged"))]

    def describe(self, spec: Any) -> list[str]:
        n_phi, trials = spec.shape
        layout = self.layout(spec)
        cells = list(layout.cells())
        parts = sum(len(self.parts(spec, cell)) for cell in cells)
        seconds = sum(self.cell_seconds(spec, cell) for cell in cells)
        samples = [spec.samples(i) for i in range(n_phi)]
        largest = max(spec.run_bytes(i) for i in range(n_phi))
        cube = 8 * (spec.parameters + len(VARIABLES)) * n_phi * trials
        options = spec.search
        return [
            f"grid: {n_phi} phi × {trials} trials, n = {spec.n} ({spec.parameters} parameters), "
            f"m = {min(samples)}..{max(samples)} samples",
            f"points: {n_phi * trials} runs (descent to a random level, then J = |grad L|² minimised to "
            f"<= {options.tolerance:g}; index at {options.zero_tolerance:g} max|λ|)",
            f"unconverged runs (J above {options.tolerance:g} at the caps {options.max_descent_iterations}"
            f" and {options.max_j_iterations}) are kept and done with converged = false: the paper "
            "discards them",
            f"tasks: {len(cells)} cells (one per phi) of {parts} parts, and {len(cells)} cell writes",
            f"work: about {seconds:.3g} s of one core",
            f"memory: about {largest / 1e6:.3g} MB per run; cube about {cube / 1e6:.3g} MB",
        ]


def _where(spec: PBNetSpec, i_phi: int) -> str:
    """``phi[1] = 0.125``: a cell for messages."""
    return f"phi[{i_phi}] = {spec.grid.phi[i_phi]:g}"


# ----------------------------------------------------------------------------------------------
# Assembly and checks
# ----------------------------------------------------------------------------------------------

# The variables copied from a NetworkCriticalPoint's attribute of the same name.
_COPIED = (
    "energy",
    "index",
    "negative",
    "nullity",
    "gradient_norm_sq",
    "converged",
    "level",
    "initial_energy",
    "start_energy",
    "descent_iterations",
    "j_iterations",
    "cycles",
    "weight_norm",
    "zero_threshold",
    "message",
)


def _cell_data(spec: PBNetSpec, cell: tuple[int, ...], runs: Sequence[Any]) -> CellData:
    """A cell's blocks from one :class:`NetworkRun` or :class:`CellFailure` per trial."""
    layout = PBNetFamily().layout(spec)
    layout.check_cell(cell)
    if len(runs) != spec.trials:
        raise ValueError(f"expected {spec.trials} results (one per trial), got {len(runs)}")
    arrays = {name: layout.empty(name) for name in layout.variables}
    errors = np.full(layout.block_shape(_POINT), "", dtype=STRING)
    messages: list[str] = []
    for trial, run in enumerate(runs):
        at = (0, trial)
        if isinstance(run, CellFailure):
            messages.append(run.message)
            errors[at] = f"search: {run.message}"
            continue
        if not isinstance(run, NetworkRun):
            raise TypeError(
                f"trial {trial}: expected a NetworkRun or a CellFailure, not {type(run).__name__}"
            )
        shape = np.shape(run.point.eigenvalues)
        if shape != (spec.parameters,):
            raise ValueError(
                f"trial {trial}: expected {spec.parameters} eigenvalues (2n², n = {spec.n}), got {shape}"
            )
        for name in _COPIED:
            arrays[name][at] = getattr(run.point, name)
        arrays["gauss_newton_mean"][at] = run.gauss_newton_mean
        arrays["eigenvalues"][at] = run.point.eigenvalues
    return CellData(arrays=arrays, errors=errors, messages=tuple(messages))


def _problems(spec: PBNetSpec, read: Callable[[str], np.ndarray]) -> list[Problem]:
    """(problem, mask over (phi, trial)) for :meth:`PBNetFamily.problems`.

    A run that did not converge is a result, not a problem; ``converged`` must only agree with ``J``.
    """
    eigenvalues = read("eigenvalues")
    with np.errstate(invalid="ignore"):
        descending = np.any(np.diff(eigenvalues, axis=-1) < 0, axis=-1)
    # The counts again, from the stored eigenvalues, as find_critical_point makes them (the same
    # operations on the same numbers: equal exactly).
    threshold = spec.search.zero_tolerance * np.max(np.abs(eigenvalues), axis=-1)
    with np.errstate(invalid="ignore"):
        negative = np.sum(eigenvalues < -threshold[..., None], axis=-1)
        nullity = np.sum(np.abs(eigenvalues) <= threshold[..., None], axis=-1)
        miscounted = (
            (threshold != read("zero_threshold"))
            | (negative != read("negative"))
            | (nullity != read("nullity"))
            | (negative / spec.parameters != read("index"))
        )
        gradient = read("gradient_norm_sq")
        energy, sigma = read("energy"), read("gauss_newton_mean")
        return [
            (
                "eigenvalues missing, not finite or not ascending",
                ~np.all(np.isfinite(eigenvalues), axis=-1) | descending,
            ),
            ("index, negative, nullity or zero_threshold disagrees with the eigenvalues", miscounted),
            ("energy missing or negative", ~(energy >= 0)),
            ("gradient_norm_sq missing or negative", ~(gradient >= 0)),
            (
                f"converged disagrees with gradient_norm_sq <= {spec.search.tolerance:g}",
                read("converged") != (gradient <= spec.search.tolerance),
            ),
            ("gauss_newton_mean missing or negative (H0 is positive semidefinite)", ~(sigma >= 0)),
            ("message missing", read("message") == ""),
        ]
