"""The Pennington–Bahri family (``shared/theory/pennington_bahri.md``): sweeps over ``(φ, ε, trial)``.

A sweep file with ``family: pb``::

    family: pb
    name: pb_wigner
    model: wigner          # wigner | product
    sigma: 1.0             # mean eigenvalue of H₀ (> 0)
    N: 1000                # Monte Carlo matrix dimension
    trials: 4
    seed: 0
    grid:
      phi: [0.25, 0.5, 0.75]                  # list or {start, stop, num, scale: linear|log}
      eps: {start: 0.0, stop: 0.2, num: 9}
    theory: {points: 400}

Its cube:

* point dimensions ``phi``, ``eps``, ``trial``; a cell is ``(phi, eps)``: one theory solve
  (:func:`pipeline.pb.solve`) and the draws of its trials (:func:`pipeline.pb.sample`);
* dimensions ``eig`` (``0 … N−1``) and ``x`` (theory grid index); coordinates ``phi``, ``eps``,
  ``trial``, ``eig``, ``x`` and ``critical_energy`` (on ``phi``: the closed form
  :func:`pipeline.pb.critical_energy`, written once with the cube);
* Monte Carlo variables ``eigenvalues`` (ascending), ``mc_index`` (the fraction below
  ``−zero_tolerance``, :attr:`PBSample.index <pipeline.pb.PBSample.index>`) and
  ``mc_zero_fraction``; theory variables ``density``, ``density_x``, ``index`` (``α``),
  ``atom_zero``, ``edge_left``, ``edge_right``, ``bulk_count``, ``mass``, ``converged``,
  ``residual``, ``quadrature_error`` and ``note``;
* attributes ``pb_model``, ``sigma`` and ``N``.

A point ``(φ, ε, trial)`` is complete when the theory of its cell converged and its trial's draw
succeeded; a theory that did not converge is written (for inspection) but its points fail with
``theory: did not converge (mass …, residual …): <note>``.  Every draw's seed is
``(seed, i_phi, i_eps, trial)`` (:meth:`PBSpec.seed_for`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any, ClassVar

import numpy as np
import yaml

from pipeline import pb, schema
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
from pipeline.pb import PBSample, PBTheory
from pipeline.sweep import MAX_P

__all__ = ["MAX_DRAW_BYTES", "PBFamily", "PBGrid", "PBSpec", "cell_data"]

#: Largest memory of one draw (``A``, ``H`` and ``H₁``'s noise, in bytes): a sanity limit, the
#: size of the largest dense matrix that :data:`~pipeline.sweep.MAX_P` allows (80 GB).  A tiny
#: ``φ`` is what exceeds it: ``H₀ = AAᵀ/m`` has ``m = round(N/φ)`` data columns.
MAX_DRAW_BYTES = 8 * MAX_P**2

_TOP_KEYS = ("family", "name", "model", "sigma", "N", "trials", "seed", "grid", "theory")
_REQUIRED_KEYS = ("name", "N", "grid")
_GRID_KEYS = ("phi", "eps")
_THEORY_KEYS = ("points",)
# pipeline.pb.solve's fewest abscissae: every bulk (up to three) gets its ends and a few interior
# points.
_MIN_THEORY_POINTS = 16
_DEFAULT_THEORY_POINTS = 400

_POINT = ("phi", "eps", "trial")
_CELL = ("phi", "eps")
_F64, _BOOL = np.dtype(np.float64), np.dtype(np.bool_)
_VARIABLES = {
    "eigenvalues": Variable((*_POINT, "eig"), _F64, "all Monte Carlo eigenvalues, ascending"),
    "mc_index": Variable(
        _POINT, _F64, "fraction of the Monte Carlo eigenvalues below -zero_tolerance (N·eps_mach·max|λ|)"
    ),
    "mc_zero_fraction": Variable(
        _POINT, _F64, "fraction of the Monte Carlo eigenvalues within ±zero_tolerance (the atom at 0)"
    ),
    "density": Variable((*_CELL, "x"), _F64, "limiting density of the continuous part (inf at a hard edge)"),
    "density_x": Variable((*_CELL, "x"), _F64, "abscissae of the density, ascending, covering every bulk"),
    "index": Variable(_CELL, _F64, "alpha: mass of the limiting spectrum strictly below 0"),
    "atom_zero": Variable(_CELL, _F64, "mass of the limiting spectrum's atom at 0"),
    "edge_left": Variable(_CELL, _F64, "leftmost edge of the support"),
    "edge_right": Variable(_CELL, _F64, "rightmost edge of the support"),
    "bulk_count": Variable(
        _CELL,
        np.dtype(np.int16),
        "number of disjoint intervals (bulks) of the support (0 where no theory result)",
    ),
    "mass": Variable(_CELL, _F64, "integral of the density plus the atom at 0"),
    "converged": Variable(_CELL, _BOOL, "the theory's edges, roots, quadrature and mass within tolerance"),
    "residual": Variable(_CELL, _F64, "largest relative backward residual of the roots used"),
    "quadrature_error": Variable(_CELL, _F64, "estimate of the absolute error of mass and index"),
    "note": Variable(_CELL, STRING, "what failed in the theory, if anything"),
}

# A draw cheaper than this (a few milliseconds) shares one part with the other trials of its cell:
# the GLM family's threshold (a scheduler's cost per task is about a millisecond).
_BATCH_FLOPS = 3e7
# One-core costs, for batching only (a factor 2 off only halves or doubles a batch), measured with
# OMP_NUM_THREADS=1 on the shared 2-core machine: pipeline.pb.solve takes 3-13 ms whatever the
# points (16-400: the quadrature, not the grid, is its work); a draw about 1 ms of Python calls and
# small arrays, its BLAS/LAPACK work (dsyrk, dsyevd) at about 2e10 flop/s and its normal deviates
# at about 1e8 per second (so 1.7 ms at N = 100, φ = 0.25; 0.02-0.05 s at N = 500; 0.12-0.27 s at
# N = 1000, where this model says 0.11-0.32 s); a cell's write about 0.06 s (the GLM family's
# measurement: the same store).
_SOLVE_SECONDS = 0.01
_DRAW_SECONDS = 1e-3
_FLOPS_PER_SECOND = 2e10
_NORMALS_PER_SECOND = 1e8
_WRITE_SECONDS = 0.06


# ----------------------------------------------------------------------------------------------
# The specification
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PBGrid:
    """The two axes of a sweep, expanded to their values (in file order)."""

    phi: tuple[float, ...]
    eps: tuple[float, ...]


@dataclass(frozen=True)
class PBSpec:
    """A validated Pennington–Bahri sweep; build it with :func:`pipeline.sweep.parse_sweep`.

    The constructor does not validate.  Two specs compare equal when their definitions are equal
    (:meth:`to_dict`), whatever the formatting or comments of their YAML text.

    Attributes
    ----------
    name : str
        Letters, digits, ``-`` and ``_``: it names the store, ``results/<name>.zarr``.
    model : {"wigner", "product"}
        ``H₁`` of Sec. 4 (Wigner) or Sec. 6 (block product-Wishart).
    sigma : float
        ``σ > 0``, the mean eigenvalue of ``H₀``.
    N : int
        Monte Carlo dimension, ``2 <= N <= MAX_P``.
    trials : int
        Draws per ``(φ, ε)``, ``>= 1``.
    seed : int
        Root of every draw's seed, ``>= 0`` (see :meth:`seed_for`).
    grid : PBGrid
        The values of ``φ`` (``> 0``) and ``ε`` (``>= 0``).
    points : int
        Abscissae of the theory's density, ``>= 16``.
    source_text : str
        The YAML text the spec was read from, kept for the cube's attributes.
    """

    name: str
    model: str
    sigma: float
    N: int
    trials: int
    seed: int
    grid: PBGrid
    points: int = _DEFAULT_THEORY_POINTS
    source_text: str = field(default="", compare=False, repr=False)
    #: The family of these sweeps.
    family: ClassVar[str] = "pb"

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_phi, n_eps, trials)``: the cube's points."""
        return len(self.grid.phi), len(self.grid.eps), self.trials

    def seed_for(self, i_phi: int, i_eps: int, trial: int) -> tuple[int, int, int, int]:
        """The seed of one draw: ``(seed, i_phi, i_eps, trial)``, for :func:`pipeline.pb.sample`.

        It depends on grid indices only, so a re-run, a resume or another number of workers draws
        the same numbers.

        Raises
        ------
        IndexError
            For an index outside its axis.
        """
        for name, index, size in zip(
            ("i_phi", "i_eps", "trial"), (i_phi, i_eps, trial), self.shape, strict=True
        ):
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < size:
                raise IndexError(f"{name} must be an integer in [0, {size}), not {index!r}")
        return self.seed, int(i_phi), int(i_eps), int(trial)

    def data_columns(self, i_phi: int) -> int:
        """``m = round(N/φ)``, the data columns of ``H₀`` at ``phi[i_phi]`` (:func:`pipeline.pb.sample`)."""
        return round(self.N / self.grid.phi[i_phi])

    def draw_flops(self, i_phi: int) -> float:
        """Rough flops of one draw at ``phi[i_phi]``.

        ``m N²`` for ``H₀`` (``dsyrk``: ``N²/2`` entries of ``2m`` flops), ``(4/3) N³`` for the
        tridiagonalisation of ``dsyevd``, and in the product model ``2 n₁ n₂ k ≈ N³/(4φ)`` for
        ``H₁₂ = ÊX̂ᵀ`` (``k = N/(2φ)``).
        """
        n, m = self.N, self.data_columns(i_phi)
        flops = m * n**2 + 4 * n**3 / 3
        if self.model == "product":
            flops += 2 * (n // 2) * (n - n // 2) * max(1, round(n / (2 * self.grid.phi[i_phi])))
        return float(flops)

    def draw_normals(self, i_phi: int) -> int:
        """Normal deviates of one draw: ``m N`` for ``A``, then ``N²`` (wigner) or ``N k`` (product)."""
        n, m = self.N, self.data_columns(i_phi)
        if self.model == "wigner":
            return m * n + n**2
        return m * n + n * max(1, round(n / (2 * self.grid.phi[i_phi])))

    def draw_bytes(self, i_phi: int) -> int:
        """Rough peak memory of one draw at ``phi[i_phi]``, in bytes.

        ``H`` (``8N²``) beside ``A`` (``8mN``, freed once ``H₀`` is formed) or beside ``H₁``'s
        noise (``8N²``, wigner; product: ``Ê``, ``X̂`` and the ``N/2 × N/2`` product).
        """
        n, m = self.N, self.data_columns(i_phi)
        if self.model == "wigner":
            noise = n**2
        else:
            noise = n * max(1, round(n / (2 * self.grid.phi[i_phi]))) + (n // 2) * (n - n // 2)
        return 8 * (n**2 + max(m * n, noise))

    def work_estimate(self) -> dict[str, int]:
        """A rough size of the sweep, for ``hessweep validate`` and the catalogue's limits.

        Returns
        -------
        dict
            ``points`` (``φ × ε``), ``theory_solves`` (one per point), ``monte_carlo_draws``
            (one per point and trial), ``monte_carlo_flops`` (:meth:`draw_flops` summed) and
            ``monte_carlo_bytes`` (the largest draw's, :meth:`draw_bytes`).

        Examples
        --------
        >>> from pipeline.sweep import parse_sweep
        >>> text = "family: pb\\nname: a\\nN: 100\\ntrials: 2\\ngrid: {phi: [0.5], eps: [0, 0.1]}"
        >>> spec = parse_sweep(text)
        >>> spec.work_estimate()  # doctest: +NORMALIZE_WHITESPACE
        {'points': 2, 'theory_solves': 2, 'monte_carlo_draws': 4, 'monte_carlo_flops': 13333333,
         'monte_carlo_bytes': 240000}
        """
        n_phi, n_eps, trials = self.shape
        flops = sum(self.draw_flops(i) for i in range(n_phi)) * n_eps * trials
        return {
            "points": n_phi * n_eps,
            "theory_solves": n_phi * n_eps,
            "monte_carlo_draws": n_phi * n_eps * trials,
            "monte_carlo_flops": round(flops),
            "monte_carlo_bytes": max(self.draw_bytes(i) for i in range(n_phi)),
        }

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain Python data, in sweep-file form with every axis as a list.

        Equal for two specs iff they define the same sweep; ``parse_sweep(yaml.safe_dump(d))``
        gives the spec back.

        Examples
        --------
        >>> from pipeline.sweep import parse_sweep
        >>> text = "family: pb\\nname: a\\nN: 50\\ngrid: {phi: [0.5], eps: {start: 0, stop: 1, num: 3}}"
        >>> spec = parse_sweep(text)
        >>> spec.to_dict()["grid"]
        {'phi': [0.5], 'eps': [0.0, 0.5, 1.0]}
        >>> parse_sweep(yaml.safe_dump(spec.to_dict())) == spec
        True
        """
        return {
            "family": self.family,
            "name": self.name,
            "model": self.model,
            "sigma": self.sigma,
            "N": self.N,
            "trials": self.trials,
            "seed": self.seed,
            "grid": {"phi": list(self.grid.phi), "eps": list(self.grid.eps)},
            "theory": {"points": self.points},
        }

    def differences(self, other: Any) -> list[str]:
        """What differs between two definitions, one ``"path: mine != theirs"`` line per field.

        Examples
        --------
        >>> from pipeline.sweep import parse_sweep
        >>> a = parse_sweep("family: pb\\nname: a\\nN: 50\\ngrid: {phi: [0.5], eps: [0.1]}")
        >>> b = parse_sweep("family: pb\\nname: a\\nN: 60\\nmodel: product\\ngrid: {phi: [0.5], eps: [0.1]}")
        >>> a.differences(b)
        ["model: 'wigner' != 'product'", 'N: 50 != 60']
        """
        return schema.differences(self.to_dict(), other.to_dict())

    @classmethod
    def from_dict(cls, data: Any, *, source_text: str | None = None) -> PBSpec:
        """Validate a sweep given as Python data (the parsed YAML document).

        Defaults: ``model: wigner``, ``sigma: 1.0``, ``trials: 1``, ``seed: 0``,
        ``theory: {points: 400}``; ``name``, ``N`` and ``grid`` (``phi`` and ``eps``) are
        required.

        Raises
        ------
        SweepError
            Naming the YAML path of the first field at fault.
        """
        spec = _validate(data)
        text = yaml.safe_dump(spec.to_dict(), sort_keys=False) if source_text is None else source_text
        return replace(spec, source_text=text)


def _validate(data: Any) -> PBSpec:
    top = schema.document(data, _TOP_KEYS)
    if top.get("family") != PBSpec.family:
        raise SweepError(
            "family", f"must be {PBSpec.family!r} for this family, not {schema.shown(top.get('family'))}"
        )
    for key in _REQUIRED_KEYS:
        if key not in top:
            raise SweepError(key, "is required")

    name = schema.name(top["name"])
    model = top.get("model", "wigner")
    if not isinstance(model, str) or model not in pb.MODELS:
        raise SweepError("model", f"must be one of {', '.join(pb.MODELS)}, not {schema.shown(model)}")
    sigma = schema.finite(top.get("sigma", 1.0), "sigma")
    if sigma <= 0.0:
        raise SweepError("sigma", "must be > 0")
    n = schema.integer(top["N"], "N", minimum=2)
    if n > MAX_P:
        raise SweepError("N", f"must be <= {MAX_P} (a sanity limit: one dense N × N matrix is 8N² bytes)")
    trials = schema.integer(top.get("trials", 1), "trials", minimum=1)
    seed = schema.integer(top.get("seed", 0), "seed", minimum=0)
    grid = _grid(top["grid"], trials)
    options = schema.mapping({} if top.get("theory") is None else top["theory"], "theory", _THEORY_KEYS)
    points = schema.integer(
        options.get("points", _DEFAULT_THEORY_POINTS), "theory.points", minimum=_MIN_THEORY_POINTS
    )
    if points > schema.MAX_THEORY_POINTS:
        raise SweepError("theory.points", f"must be <= {schema.MAX_THEORY_POINTS} (a sanity limit)")

    spec = PBSpec(
        name=name, model=model, sigma=sigma, N=n, trials=trials, seed=seed, grid=grid, points=points
    )
    for i, phi in enumerate(grid.phi):
        columns = n / phi  # inf for a subnormal φ
        if math.isfinite(columns) and round(columns) < 1:
            reason = f"N = {n} at phi = {phi:g} gives m = round(N/phi) = 0 data columns"
            raise SweepError(f"grid.phi[{i}]", reason)
        if not math.isfinite(columns) or spec.draw_bytes(i) > MAX_DRAW_BYTES:
            size = spec.draw_bytes(i) / 1e9 if math.isfinite(columns) else math.inf
            raise SweepError(
                f"grid.phi[{i}]",
                f"N = {n} at phi = {phi:g} gives m = round(N/phi) = {columns:.3g} data columns, a draw of "
                f"{size:.3g} GB, more than the sanity limit of {MAX_DRAW_BYTES / 1e9:g} GB",
            )
    return spec


def _grid(value: Any, trials: int) -> PBGrid:
    grid = schema.mapping(value, "grid", _GRID_KEYS)
    for key in _GRID_KEYS:
        if key not in grid:
            raise SweepError(f"grid.{key}", "is required")
    # The points are counted before any axis is read, so that a huge grid costs nothing to refuse.
    lengths = [length for key in _GRID_KEYS if (length := schema.axis_length(grid[key])) is not None]
    if len(lengths) == len(_GRID_KEYS):
        n_phi, n_eps = lengths
        if n_phi * n_eps * trials > schema.MAX_CELLS:
            raise SweepError(
                "grid",
                f"{n_phi} phi × {n_eps} eps × {trials} trials = {n_phi * n_eps * trials} points, "
                f"more than the sanity limit of {schema.MAX_CELLS}",
            )
    phi = schema.axis(grid["phi"], "grid.phi")
    for i, value_phi in enumerate(phi):
        if value_phi <= 0.0:
            raise SweepError(f"grid.phi[{i}]", "must be > 0")
    eps = schema.axis(grid["eps"], "grid.eps")
    for i, value_eps in enumerate(eps):
        if value_eps < 0.0:
            raise SweepError(f"grid.eps[{i}]", "must be >= 0")
    return PBGrid(phi=phi, eps=eps)


# ----------------------------------------------------------------------------------------------
# The family
# ----------------------------------------------------------------------------------------------


class PBFamily(Family):
    """The Pennington–Bahri family: :class:`PBSpec` sweeps over ``(phi, eps, trial)``."""

    name = "pb"

    def parse(self, data: Mapping[str, Any], *, source_text: str | None = None) -> PBSpec:
        return PBSpec.from_dict(data, source_text=source_text)

    def layout(self, spec: Any) -> Layout:
        n_phi, n_eps, trials = spec.shape
        sizes = {"phi": n_phi, "eps": n_eps, "trial": trials, "eig": spec.N, "x": spec.points}
        critical = [pb.critical_energy(phi, spec.model, sigma=spec.sigma) for phi in spec.grid.phi]
        coords: dict[str, tuple[str, np.ndarray]] = {
            "phi": ("phi", np.array(spec.grid.phi, dtype=np.float64)),
            "eps": ("eps", np.array(spec.grid.eps, dtype=np.float64)),
            "trial": ("trial", np.arange(trials, dtype=np.int64)),
            "eig": ("eig", np.arange(spec.N, dtype=np.int64)),
            "x": ("x", np.arange(spec.points, dtype=np.int64)),
            # A coordinate, written once with the cube: as a variable of dimension phi every cell
            # of a φ would write its one chunk.
            "critical_energy": ("phi", np.array(critical, dtype=np.float64)),
        }
        return Layout(
            point_dims=_POINT,
            cell_dims=_CELL,
            sizes=sizes,
            coords=coords,
            variables=_VARIABLES,
            attrs={"pb_model": spec.model, "sigma": spec.sigma, "N": spec.N},
        )

    def parts(self, spec: Any, cell: tuple[int, ...]) -> list[Part]:
        trials = spec.trials
        # Cheap draws go in one part per cell, so that the per-task overhead of a scheduler stays
        # small beside the work; others get a part per trial.
        per_part = trials if spec.draw_flops(cell[0]) < _BATCH_FLOPS else 1
        return [("theory",), *trial_parts("montecarlo", trials, per_part)]

    def part_name(self, spec: Any, cell: tuple[int, ...], part: Part) -> str:
        i_phi, i_eps = cell
        if part[0] == "theory":
            return f"theory at phi[{i_phi}], eps[{i_eps}]"
        return f"Monte Carlo at phi[{i_phi}], eps[{i_eps}], trials {part[1]}..{int(part[2]) - 1}"

    def compute(self, spec: Any, cell: tuple[int, ...], part: Part, attempts: int) -> Any:
        i_phi, i_eps = cell
        phi, eps = spec.grid.phi[i_phi], spec.grid.eps[i_eps]
        if part[0] == "theory":
            # Looked up at call time (pb.solve, pb.sample): tests replace them.
            return pb.solve(phi, eps, spec.model, sigma=spec.sigma, points=spec.points)
        return [
            attempt(
                f"Monte Carlo at phi[{i_phi}], eps[{i_eps}], trial {trial}",
                attempts,
                _draw(spec, i_phi, i_eps, trial),
            )
            for trial in range(int(part[1]), int(part[2]))
        ]

    def assemble(self, spec: Any, cell: tuple[int, ...], results: Sequence[Any]) -> CellData:
        parts = self.parts(spec, cell)
        if len(results) != len(parts):
            raise ValueError(f"expected {len(parts)} results (one per part), got {len(results)}")
        names = [self.part_name(spec, cell, part) for part in parts[1:]]
        drawn = trial_results(parts[1:], results[1:], names)
        return cell_data(spec, cell, results[0], drawn)

    def cell_seconds(self, spec: Any, cell: tuple[int, ...]) -> float:
        i_phi = cell[0]
        draw = (
            _DRAW_SECONDS
            + spec.draw_flops(i_phi) / _FLOPS_PER_SECOND
            + spec.draw_normals(i_phi) / _NORMALS_PER_SECOND
        )
        return _SOLVE_SECONDS + spec.trials * draw + _WRITE_SECONDS

    def problems(self, spec: Any, read: Callable[[str], np.ndarray]) -> list[Problem]:
        eigenvalues = read("eigenvalues")
        with np.errstate(invalid="ignore"):
            descending = np.any(np.diff(eigenvalues, axis=-1) < 0, axis=-1)
        index, zero = read("mc_index"), read("mc_zero_fraction")
        found: list[Problem] = [
            ("eigenvalues missing or not finite", ~np.all(np.isfinite(eigenvalues), axis=-1)),
            ("eigenvalues not ascending", descending),
            (
                "Monte Carlo index or zero fraction missing or outside [0, 1]",
                ~((index >= 0) & (zero >= 0) & (index + zero <= 1)),
            ),
        ]
        # Theory variables have no trial axis: a problem there is every trial's problem.
        x, density = read("density_x"), read("density")
        alpha, atom = read("index"), read("atom_zero")
        left, right = read("edge_left"), read("edge_right")
        with np.errstate(invalid="ignore"):
            unordered = ~np.all(np.diff(x, axis=-1) > 0, axis=-1)
            # +inf is the density at a hard edge (0 at φ = 1, ε = 0; product model at φ = 2).
            negative = ~np.all(density >= 0, axis=-1)
            theory: list[Problem] = [
                ("done, but its theory did not converge", ~read("converged")),
                (
                    "theory abscissae missing, not finite or not increasing",
                    ~np.all(np.isfinite(x), -1) | unordered,
                ),
                ("theory density missing or negative", negative),
                ("theory index missing or outside [0, 1]", ~((alpha >= 0) & (alpha <= 1))),
                ("theory atom at 0 missing or outside [0, 1]", ~((atom >= 0) & (atom <= 1))),
                (
                    "theory mass or residual missing",
                    ~np.isfinite(read("mass")) | ~np.isfinite(read("residual")),
                ),
                ("no bulk in the theory result", read("bulk_count") < 1),
                (
                    "theory edges missing, not finite or reversed",
                    ~(np.isfinite(left) & (left <= right) & np.isfinite(right)),
                ),
            ]
        trials = spec.trials
        return found + [(what, np.repeat(mask[..., None], trials, -1)) for what, mask in theory]

    def describe(self, spec: Any) -> list[str]:
        n_phi, n_eps, trials = spec.shape
        work = spec.work_estimate()
        draw_parts = sum(len(self.parts(spec, cell)) - 1 for cell in product(range(n_phi), range(n_eps)))
        cells = n_phi * n_eps
        return [
            f"grid: {n_phi} phi × {n_eps} eps × {trials} trials, N = {spec.N}, model {spec.model}, "
            f"sigma = {spec.sigma:g}",
            f"points: {work['points']} (phi × eps), {work['monte_carlo_draws']} with trials",
            f"tasks: {cells + draw_parts + cells} "
            f"({cells} theory, {draw_parts} Monte Carlo, {cells} cell writes)",
            f"work: {work['theory_solves']} theory solves of {spec.points} points, "
            f"{work['monte_carlo_draws']} Monte Carlo draws, about {work['monte_carlo_flops']:.3g} flops",
            f"memory: about {work['monte_carlo_bytes'] / 1e9:.3g} GB per Monte Carlo draw",
        ]


def _draw(spec: PBSpec, i_phi: int, i_eps: int, trial: int) -> Callable[[], PBSample]:
    """The draw of one trial, as a function of nothing (for :func:`attempt`)."""
    phi, eps, seed = spec.grid.phi[i_phi], spec.grid.eps[i_eps], spec.seed_for(i_phi, i_eps, trial)
    return lambda: pb.sample(phi, eps, spec.N, seed, spec.model, sigma=spec.sigma)


# ----------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------


def cell_data(
    spec: PBSpec,
    cell: tuple[int, ...],
    theory: PBTheory | CellFailure,
    montecarlo: Sequence[PBSample | CellFailure],
) -> CellData:
    """A cell's blocks from its theory result and its Monte Carlo samples (one per trial).

    Parameters
    ----------
    spec : PBSpec
    cell : (int, int)
        ``(i_phi, i_eps)``.
    theory : PBTheory or CellFailure
        With ``spec.points`` abscissae.
    montecarlo : sequence
        One :class:`~pipeline.pb.PBSample` (``N`` eigenvalues) or :class:`CellFailure` per trial.

    Returns
    -------
    CellData
        A point (trial) fails if the theory failed or did not converge, or if its draw failed: its
        error says why (``theory: …``, ``montecarlo: …``, joined by ``; ``), and whatever part
        succeeded is still in the arrays.

    Raises
    ------
    TypeError, ValueError
        For results of the wrong kind, number or shape.
    """
    i_phi, i_eps = cell
    trials = spec.trials
    _check_theory(theory, spec)
    if isinstance(montecarlo, (str, bytes)) or not isinstance(montecarlo, Sequence):
        raise TypeError(
            f"montecarlo: expected a sequence of results per trial, not {type(montecarlo).__name__}"
        )
    if len(montecarlo) != trials:
        raise ValueError(f"montecarlo: expected {trials} results (one per trial), got {len(montecarlo)}")
    for trial, sample in enumerate(montecarlo):
        _check_sample(sample, spec, f"montecarlo[{trial}]")

    layout = PBFamily().layout(spec)
    arrays = {name: layout.empty(name) for name in layout.variables}
    errors = ["" for _ in range(trials)]
    messages: list[str] = []

    if isinstance(theory, CellFailure):
        messages.append(theory.message)
        errors = [f"theory: {theory.message}"] * trials
    else:
        at = (0, 0)
        arrays["density"][at] = theory.density
        arrays["density_x"][at] = theory.x
        arrays["index"][at] = theory.index
        arrays["atom_zero"][at] = theory.atom_zero
        arrays["edge_left"][at] = theory.edge_left
        arrays["edge_right"][at] = theory.edge_right
        arrays["bulk_count"][at] = theory.edges.shape[0]
        arrays["mass"][at] = theory.mass
        arrays["converged"][at] = theory.converged
        arrays["residual"][at] = theory.residual
        arrays["quadrature_error"][at] = theory.quadrature_error
        arrays["note"][at] = theory.note
        if not theory.converged:
            # Written for inspection, never marked done.
            messages.append(f"theory at phi[{i_phi}], eps[{i_eps}]: did not converge")
            errors = [f"theory: {_unconverged(theory)}"] * trials

    for trial, sample in enumerate(montecarlo):
        point = (0, 0, trial)
        if isinstance(sample, CellFailure):
            if sample.message not in messages:  # a failed part of several trials: said once
                messages.append(sample.message)
            message = f"montecarlo: {sample.message}"
            errors[trial] = f"{errors[trial]}; {message}" if errors[trial] else message
            continue
        arrays["eigenvalues"][point] = sample.eigenvalues
        arrays["mc_index"][point] = sample.index
        arrays["mc_zero_fraction"][point] = sample.zero_fraction
    point_errors = np.array(errors, dtype=STRING).reshape(1, 1, trials)
    return CellData(arrays=arrays, errors=point_errors, messages=tuple(messages))


def _unconverged(result: PBTheory) -> str:
    """Why a theory result that did not converge is not trusted, for its points' ``error``."""
    why = f"did not converge (mass {result.mass:.6g}, residual {result.residual:.3g})"
    return f"{why}: {result.note}" if result.note else why


def _check_theory(result: object, spec: PBSpec) -> None:
    if isinstance(result, CellFailure):
        return
    if not isinstance(result, PBTheory):
        raise TypeError(f"theory: expected a PBTheory or a CellFailure, not {type(result).__name__}")
    for name in ("x", "density"):
        shape = np.shape(getattr(result, name))
        if shape != (spec.points,):
            raise ValueError(f"theory.{name}: expected shape ({spec.points},) (theory.points), got {shape}")
    if np.ndim(result.edges) != 2 or np.shape(result.edges)[1:] != (2,) or len(result.edges) == 0:
        raise ValueError(f"theory.edges: expected shape (n_bulks >= 1, 2), got {np.shape(result.edges)}")


def _check_sample(result: object, spec: PBSpec, where: str) -> None:
    if isinstance(result, CellFailure):
        return
    if not isinstance(result, PBSample):
        raise TypeError(f"{where}: expected a PBSample or a CellFailure, not {type(result).__name__}")
    shape = np.shape(result.eigenvalues)
    if shape != (spec.N,):
        raise ValueError(f"{where}.eigenvalues: expected shape ({spec.N},) (N), got {shape}")
