"""The Arjevani–Field family (``shared/theory/arjevani_field.md``): sweeps of critical-point searches.

A sweep (``family: relu``) runs :func:`~pipeline.relu.find_critical_point` on the shallow ReLU model
(``k`` neurons, ``d = k + extra`` inputs, the standard teacher ``V = [I_k 0]``) from many starts,
and classifies every point found (:func:`~pipeline.relu.classify`, :func:`~pipeline.relu.isotropy`)::

    family: relu
    name: relu_demo
    trials: 8                        # searches per (k, extra, start)
    seed: 0
    grid:
      k: [6, 8, 10]                  # neurons: distinct integers >= 1
      extra: [0]                     # d - k: distinct integers >= 0 (default [0])
      start: [random, flip1]         # default [random]
    perturbation: 1.0e-3             # default 1.0e-3
    search: {gradient_tolerance: 1.0e-12, max_iterations: 20000, newton_steps: 30, method: L-BFGS-B}

Starts: ``random``, i.i.d. ``N(0, 1/d)`` entries (:func:`~pipeline.relu.random_start`); ``flipP``
(``1 <= P < k``), the symmetric start "flip the last ``P`` neurons" (:func:`~pipeline.relu.flip_start`
of blocks ``[k − P, P]``, isotropy ``S_{k-P} x S_P``) plus ``perturbation`` times i.i.d. ``N(0, 1)``
entries, so that the trials of a flip start test the stability of the symmetric critical point
(``perturbation: 0``: the exact start, and then every trial is the same search).  Every search runs in
the whole space (no fixed space): a point found is where descent from that start goes.  The
random numbers of a trial come from ``(seed, i_k, i_extra, i_start, trial)`` (:meth:`ReluSpec.seed_for`).

The cube:

* point dimensions ``k``, ``extra``, ``start``, ``trial``; a cell is ``(k, extra, start)`` (the
  trials of one start at one ``(k, d)``);
* ``eig`` (``max k·d`` over the grid), ``row`` (``max k``) and ``col`` (``max d``); coordinates
  ``k``, ``extra``, ``start`` (strings), ``trial``, ``eig``, ``row``, ``col``, and ``d`` on
  ``(k, extra)``;
* variables (:data:`VARIABLES`): ``loss``, ``gradient_norm``, ``kind`` (``"global minimum"``,
  ``"spurious minimum"`` or ``"saddle"``), ``hessian_index``, ``nullity``, ``isotropy``,
  ``converged``, ``iterations``, ``eigenvalues`` (all ``k·d`` Hessian eigenvalues ascending, NaN
  after them) and ``weights`` (the point ``W``, NaN outside its ``k × d`` block).

A point fails (recorded, never marked done) when its search raised, or did not reach the gradient
tolerance: its error says why, and what the search returned is written for inspection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar

import numpy as np
import yaml

from pipeline import schema
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
from pipeline.relu import (
    Classification,
    CriticalPoint,
    classify,
    find_critical_point,
    flip_start,
    isotropy,
    random_start,
    standard_teacher,
)
from pipeline.relu.critical import (
    _DESCENT_ITERATIONS,
    _NEWTON_STEPS,
    EIGENVALUE_TOLERANCE,
    GRADIENT_TOLERANCE,
    LOSS_TOLERANCE,
    _loss_scale,
)

__all__ = [
    "KINDS",
    "MAX_GRADIENT_TOLERANCE",
    "MAX_WEIGHTS",
    "METHODS",
    "VARIABLES",
    "ReluFamily",
    "ReluGrid",
    "ReluSpec",
    "SearchOptions",
    "SearchResult",
    "search",
]

#: The kinds of critical point (:attr:`~pipeline.relu.Classification.kind`).
KINDS = ("global minimum", "spurious minimum", "saddle")
#: scipy ``minimize`` methods a sweep may name (``search.method``): those that take the gradient
#: tolerance ``gtol`` that :func:`~pipeline.relu.find_critical_point` passes (not ``Newton-CG``) and
#: run without warnings on this loss (not ``trust-krylov``: "invalid value" warnings from a start at k = 12).
METHODS = ("L-BFGS-B", "BFGS", "CG", "trust-exact", "trust-ncg")
#: Largest ``k·d`` (a sanity limit): the Hessian is ``k·d × k·d`` (134 MB at 4096), and each Newton
#: step solves it by least squares, O((kd)³); beyond it a sweep is almost surely a typo.
MAX_WEIGHTS = 4096
#: Largest ``search.gradient_tolerance``.  A point at gradient norm ``g`` lies about ``g/λ_min`` from
#: its critical point, which moves the Hessian's eigenvalues by about ``|∇³L| g/λ_min ≈ 10³ g`` (the
#: type-A minimum at k = 6: λ_min ≈ 5e-3); :func:`~pipeline.relu.classify` counts as zero what lies
#: within ``1e-8 max|λ| ≈ 2e-8``.  At ``g ≤ 1e-11`` the move stays below half of that, so a point
#: marked done is classified as its critical point would be.
MAX_GRADIENT_TOLERANCE = 1e-11

_FAMILY = "relu"
_TOP_KEYS = ("family", "name", "trials", "seed", "grid", "perturbation", "search")
_GRID_KEYS = ("k", "extra", "start")
_SEARCH_KEYS = ("gradient_tolerance", "max_iterations", "newton_steps", "method")
_RANDOM = "random"
_FLIP = re.compile(r"flip([1-9][0-9]*)")
_DEFAULT_PERTURBATION = 1e-3

_POINT = ("k", "extra", "start", "trial")
_F64, _BOOL, _I32, _I64 = (np.dtype(t) for t in (np.float64, np.bool_, np.int32, np.int64))
#: The cube's data variables (a contract for the tools that read it).
VARIABLES = {
    "loss": Variable(_POINT, _F64, "population loss L(W) at the point found"),
    "gradient_norm": Variable(_POINT, _F64, "Frobenius norm of the gradient at the point found"),
    "kind": Variable(_POINT, STRING, "'global minimum', 'spurious minimum' or 'saddle'"),
    "hessian_index": Variable(
        _POINT, _I32, f"number of Hessian eigenvalues below -{EIGENVALUE_TOLERANCE:g} max|λ|"
    ),
    "nullity": Variable(
        _POINT, _I32, f"number of Hessian eigenvalues within ±{EIGENVALUE_TOLERANCE:g} max|λ|"
    ),
    "isotropy": Variable(_POINT, STRING, "isotropy type of the point, e.g. 'S_{k-1} x S_1'"),
    "converged": Variable(_POINT, _BOOL, "the gradient norm reached search.gradient_tolerance"),
    "iterations": Variable(_POINT, _I64, "descent iterations plus Newton steps"),
    "eigenvalues": Variable(
        (*_POINT, "eig"), _F64, "all k·d Hessian eigenvalues, ascending, NaN after the first k·d"
    ),
    "weights": Variable((*_POINT, "row", "col"), _F64, "the point W (k × d), NaN outside its block"),
}

# One-core seconds of one search with its classification, for batching (a factor 2 off is
# harmless): measured at k = d = 6, 12, 20 (8 trials each, OMP/OpenBLAS on one thread, on a loaded
# 2-core machine), random starts took 0.027, 0.118 and 0.291 s on average, about
# 0.02 s + 6.5e-4 s × k·d; flip starts 0.03, 0.05 and 0.14 s (the start is closer to its end point).
_SEARCH_SECONDS = 0.02
_SECONDS_PER_WEIGHT = 6.5e-4
# Writing a cell (every variable's chunk, then `done`): 0.05-0.07 s, as for the GLM family.
_WRITE_SECONDS = 0.06
# A part (a task when its cell is split) gets trials worth at least this many seconds, so that the
# scheduler's few milliseconds per task stay a few percent of the work.
_PART_SECONDS = 0.1


# ----------------------------------------------------------------------------------------------
# The specification
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReluGrid:
    """The axes of a sweep: neurons ``k``, extra inputs ``d − k``, start names (in file order)."""

    k: tuple[int, ...]
    extra: tuple[int, ...] = (0,)
    start: tuple[str, ...] = (_RANDOM,)


@dataclass(frozen=True)
class SearchOptions:
    """The arguments of :func:`~pipeline.relu.find_critical_point` (``search`` in a sweep file).

    Attributes
    ----------
    gradient_tolerance : float
        ``gtol``: the gradient norm a point must reach to be done, ``0 < ... <=
        MAX_GRADIENT_TOLERANCE``.
    max_iterations, newton_steps : int
        Caps on the descent's iterations and on the Newton steps that polish its end point.
    method : str
        The descent, one of :data:`METHODS`.
    """

    gradient_tolerance: float = GRADIENT_TOLERANCE
    max_iterations: int = _DESCENT_ITERATIONS
    newton_steps: int = _NEWTON_STEPS
    method: str = "L-BFGS-B"


@dataclass(frozen=True)
class ReluSpec:
    """A validated ``family: relu`` sweep; build it with :func:`pipeline.sweep.parse_sweep`.

    Attributes
    ----------
    name : str
        Letters, digits, ``-`` and ``_``: it names the store.
    trials : int
        Searches per ``(k, extra, start)``.
    seed : int
        Root of every trial's seed (:meth:`seed_for`).
    grid : ReluGrid
    perturbation : float
        Standard deviation of the entries added to a flip start, ``>= 0``.
    search : SearchOptions
    source_text : str
        The YAML text the spec was read from.
    """

    name: str
    trials: int
    seed: int
    grid: ReluGrid
    perturbation: float = _DEFAULT_PERTURBATION
    search: SearchOptions = field(default_factory=SearchOptions)
    source_text: str = field(default="", compare=False, repr=False)
    #: The family of these sweeps.
    family: ClassVar[str] = _FAMILY

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n_k, n_extra, n_start, trials)``: the cube's points."""
        return len(self.grid.k), len(self.grid.extra), len(self.grid.start), self.trials

    def dimensions(self, i_k: int, i_extra: int) -> tuple[int, int]:
        """``(k, d)`` at grid indices ``(i_k, i_extra)``."""
        k = self.grid.k[i_k]
        return k, k + self.grid.extra[i_extra]

    def seed_for(self, i_k: int, i_extra: int, i_start: int, trial: int) -> tuple[int, int, int, int, int]:
        """The key of one trial's random numbers: ``(seed, i_k, i_extra, i_start, trial)``.

        Grid indices only: a re-run, a resume or another worker count draws the same numbers.

        Raises
        ------
        IndexError
            For an index outside its axis.
        """
        indices = (("i_k", i_k), ("i_extra", i_extra), ("i_start", i_start), ("trial", trial))
        for (name, index), size in zip(indices, self.shape, strict=True):
            if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < size:
                raise IndexError(f"{name} must be an integer in [0, {size}), not {index!r}")
        return self.seed, int(i_k), int(i_extra), int(i_start), int(trial)

    def start(self, i_k: int, i_extra: int, i_start: int, trial: int) -> np.ndarray:
        """The start ``W0`` (``k × d``) of one trial.

        ``random``: :func:`~pipeline.relu.random_start` keyed by :meth:`seed_for`; ``flipP``:
        ``flip_start([k − P, P], d) + perturbation · G``, ``G`` i.i.d. ``N(0, 1)`` from
        ``default_rng(SeedSequence(seed_for(...)))``.
        """
        key = self.seed_for(i_k, i_extra, i_start, trial)
        k, d = self.dimensions(i_k, i_extra)
        name = self.grid.start[i_start]
        if name == _RANDOM:
            return random_start(k, d, key)
        noise = np.random.default_rng(np.random.SeedSequence(key)).standard_normal((k, d))
        return flip_start(_blocks(name, k), d) + self.perturbation * noise

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain data in sweep-file form, ``family`` included.

        ``spec_from_dict(spec.to_dict()) == spec``.
        """
        options = self.search
        return {
            "family": self.family,
            "name": self.name,
            "trials": self.trials,
            "seed": self.seed,
            "grid": {"k": list(self.grid.k), "extra": list(self.grid.extra), "start": list(self.grid.start)},
            "perturbation": self.perturbation,
            "search": {
                "gradient_tolerance": options.gradient_tolerance,
                "max_iterations": options.max_iterations,
                "newton_steps": options.newton_steps,
                "method": options.method,
            },
        }

    def differences(self, other: Any) -> list[str]:
        """What differs between two definitions, one ``"path: mine != theirs"`` line per field."""
        return schema.differences(self.to_dict(), other.to_dict())

    @classmethod
    def from_dict(cls, data: Any, *, source_text: str | None = None) -> ReluSpec:
        """Validate a sweep given as Python data (the parsed YAML document).

        Raises
        ------
        SweepError
            Naming the YAML path of the first field at fault.

        Examples
        --------
        >>> spec = ReluSpec.from_dict({"family": "relu", "name": "a", "grid": {"k": [4, 6]}})
        >>> spec.shape, spec.grid.start, spec.search.method
        ((2, 1, 1, 1), ('random',), 'L-BFGS-B')
        >>> ReluSpec.from_dict({"name": "a", "grid": {"k": [4], "start": ["flip4"]}})
        Traceback (most recent call last):
        ...
        pipeline.errors.SweepError: grid.start[0]: flip4 flips 4 neurons and needs P < k, but grid.k[0] = 4
        """
        spec = _validate(data)
        text = yaml.safe_dump(spec.to_dict(), sort_keys=False) if source_text is None else source_text
        return replace(spec, source_text=text)


def _blocks(start: str, k: int) -> list[int]:
    """``flipP`` at ``k`` neurons: the blocks ``[k − P, P]`` of :func:`~pipeline.relu.flip_start`."""
    match = _FLIP.fullmatch(start)
    assert match is not None, start
    flipped = int(match.group(1))
    return [k - flipped, flipped]


def _validate(data: Any) -> ReluSpec:
    top = schema.document(data, _TOP_KEYS)
    family = top.get("family", _FAMILY)
    if family != _FAMILY:
        raise SweepError("family", f"must be {_FAMILY!r} for this family, not {family!r}")
    for key in ("name", "grid"):
        if key not in top:
            raise SweepError(key, "is required")
    name = schema.name(top["name"])
    trials = schema.integer(top.get("trials", 1), "trials", minimum=1)
    seed = schema.integer(top.get("seed", 0), "seed", minimum=0)
    grid = _grid(top["grid"])
    points = len(grid.k) * len(grid.extra) * len(grid.start) * trials
    if points > schema.MAX_CELLS:
        raise SweepError(
            "grid",
            f"{len(grid.k)} k × {len(grid.extra)} extra × {len(grid.start)} start × {trials} trials "
            f"= {points} points, more than the sanity limit of {schema.MAX_CELLS}",
        )
    perturbation = schema.finite(top.get("perturbation", _DEFAULT_PERTURBATION), "perturbation")
    if perturbation < 0:
        raise SweepError("perturbation", "must be >= 0")
    return ReluSpec(
        name=name,
        trials=trials,
        seed=seed,
        grid=grid,
        perturbation=perturbation,
        search=_search(top.get("search")),
    )


def _integers(value: Any, path: str, minimum: int) -> tuple[int, ...]:
    """A non-empty list of distinct integers ``>= minimum``."""
    if not isinstance(value, list | tuple):
        raise SweepError(path, f"must be a list of integers, not {schema.type_name(value)}")
    if not value:
        raise SweepError(path, "must not be empty")
    if len(value) > schema.MAX_CELLS:
        raise SweepError(path, f"has more than {schema.MAX_CELLS} values (a sanity limit)")
    values = tuple(schema.integer(v, f"{path}[{i}]", minimum=minimum) for i, v in enumerate(value))
    schema.unique(values, path)
    return values


def _grid(value: Any) -> ReluGrid:
    grid = schema.mapping(value, "grid", _GRID_KEYS)
    if "k" not in grid:
        raise SweepError("grid.k", "is required")
    ks = _integers(grid["k"], "grid.k", minimum=1)
    extras = _integers(grid.get("extra", [0]), "grid.extra", minimum=0)
    largest = max(ks) * (max(ks) + max(extras))
    if largest > MAX_WEIGHTS:
        i_k, i_extra = ks.index(max(ks)), extras.index(max(extras))
        reason = (
            f"k·d = {largest} at grid.k[{i_k}] = {ks[i_k]}, grid.extra[{i_extra}] = {extras[i_extra]}: "
            f"more than the sanity limit of {MAX_WEIGHTS} (the Hessian is k·d × k·d)"
        )
        raise SweepError("grid", reason)
    starts = grid.get("start", [_RANDOM])
    if not isinstance(starts, list | tuple):
        raise SweepError("grid.start", f"must be a list of start names, not {schema.type_name(starts)}")
    if not starts:
        raise SweepError("grid.start", "must not be empty")
    for i, start in enumerate(starts):
        path = f"grid.start[{i}]"
        if not isinstance(start, str):
            raise SweepError(
                path, f"must be a start name ('random' or 'flipP'), not {schema.type_name(start)}"
            )
        match = _FLIP.fullmatch(start)
        if start != _RANDOM and match is None:
            reason = f"must be 'random' or 'flipP' (flip the last P >= 1 neurons, e.g. flip1), not {start!r}"
            raise SweepError(path, reason)
        if match is not None:
            flipped = int(match.group(1))
            i_k = ks.index(min(ks))
            if flipped >= ks[i_k]:
                reason = f"{start} flips {flipped} neurons and needs P < k, but grid.k[{i_k}] = {ks[i_k]}"
                raise SweepError(path, reason)
    schema.unique(list(starts), "grid.start")
    return ReluGrid(k=ks, extra=extras, start=tuple(starts))


def _search(value: Any) -> SearchOptions:
    options = schema.mapping({} if value is None else value, "search", _SEARCH_KEYS)
    defaults = SearchOptions()
    tolerance = schema.finite(
        options.get("gradient_tolerance", defaults.gradient_tolerance), "search.gradient_tolerance"
    )
    if not 0 < tolerance <= MAX_GRADIENT_TOLERANCE:
        reason = (
            f"must be > 0 and <= {MAX_GRADIENT_TOLERANCE:g} (above it a point's classification is not "
            f"trusted), not {tolerance:g}"
        )
        raise SweepError("search.gradient_tolerance", reason)
    method = options.get("method", defaults.method)
    if method not in METHODS:
        raise SweepError("search.method", f"must be one of {', '.join(METHODS)}, not {method!r}")
    return SearchOptions(
        gradient_tolerance=tolerance,
        max_iterations=schema.integer(
            options.get("max_iterations", defaults.max_iterations), "search.max_iterations", minimum=0
        ),
        newton_steps=schema.integer(
            options.get("newton_steps", defaults.newton_steps), "search.newton_steps", minimum=0
        ),
        method=method,
    )


# ----------------------------------------------------------------------------------------------
# One search
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SearchResult:
    """One trial: the point found, its classification and its isotropy type's name."""

    point: CriticalPoint
    classification: Classification
    isotropy: str


def search(spec: ReluSpec, cell: tuple[int, ...], trial: int) -> SearchResult:
    """One trial of a cell ``(i_k, i_extra, i_start)``: the search from :meth:`ReluSpec.start`.

    :func:`~pipeline.relu.find_critical_point` with the sweep's :class:`SearchOptions` in the whole
    space, against ``standard_teacher(k, d)``; the point is classified
    (:func:`~pipeline.relu.classify`) and its isotropy named (:func:`~pipeline.relu.isotropy`)
    whether or not it converged.
    """
    i_k, i_extra, i_start = cell
    k, d = spec.dimensions(i_k, i_extra)
    teacher = standard_teacher(k, d)
    options = spec.search
    point = find_critical_point(
        spec.start(i_k, i_extra, i_start, trial),
        teacher,
        method=options.method,
        gtol=options.gradient_tolerance,
        max_iterations=options.max_iterations,
        newton_steps=options.newton_steps,
    )
    return SearchResult(point, classify(point.W, teacher), isotropy(point.W).name)


def _search_seconds(k: int, d: int) -> float:
    return _SEARCH_SECONDS + _SECONDS_PER_WEIGHT * k * d


# ----------------------------------------------------------------------------------------------
# The family
# ----------------------------------------------------------------------------------------------


class ReluFamily(Family):
    """The Arjevani–Field family: :class:`ReluSpec` sweeps over ``(k, extra, start, trial)``."""

    name = _FAMILY

    def parse(self, data: Mapping[str, Any], *, source_text: str | None = None) -> ReluSpec:
        return ReluSpec.from_dict(data, source_text=source_text)

    def layout(self, spec: Any) -> Layout:
        n_k, n_extra, n_start, trials = spec.shape
        ks = np.array(spec.grid.k, dtype=np.int64)
        d = ks[:, None] + np.array(spec.grid.extra, dtype=np.int64)[None, :]
        sizes = {
            "k": n_k,
            "extra": n_extra,
            "start": n_start,
            "trial": trials,
            "eig": int((ks[:, None] * d).max()),
            "row": int(ks.max()),
            "col": int(d.max()),
        }
        # `d` is a 2-d coordinate on (k, extra): xarray and Zarr take it like any other.
        coords: dict[str, tuple[str | tuple[str, ...], np.ndarray]] = {
            "k": ("k", ks),
            "extra": ("extra", np.array(spec.grid.extra, dtype=np.int64)),
            "start": ("start", np.array(spec.grid.start, dtype=STRING)),
            "d": (("k", "extra"), d),
            **{dim: (dim, np.arange(sizes[dim], dtype=np.int64)) for dim in ("trial", "eig", "row", "col")},
        }
        return Layout(
            point_dims=_POINT,
            cell_dims=("k", "extra", "start"),
            sizes=sizes,
            coords=coords,
            variables=VARIABLES,
            attrs={"teacher": "V = [I_k 0] (k × d)", "perturbation": spec.perturbation},
        )

    def parts(self, spec: Any, cell: tuple[int, ...]) -> list[Part]:
        trials = spec.trials
        per_part = max(1, min(trials, int(_PART_SECONDS // _search_seconds(*spec.dimensions(*cell[:2])))))
        return trial_parts("search", trials, per_part)

    def part_name(self, spec: Any, cell: tuple[int, ...], part: Part) -> str:
        first, last = int(part[1]), int(part[2])
        trials = f"trial {first}" if last == first + 1 else f"trials {first}..{last - 1}"
        return f"search at {_where(spec, cell)}, {trials}"

    def compute(self, spec: Any, cell: tuple[int, ...], part: Part, attempts: int) -> Any:
        where = _where(spec, cell)
        return [
            attempt(f"search at {where}, trial {trial}", attempts, partial(search, spec, cell, trial))
            for trial in range(int(part[1]), int(part[2]))
        ]

    def assemble(self, spec: Any, cell: tuple[int, ...], results: Sequence[Any]) -> CellData:
        parts = self.parts(spec, cell)
        names = [self.part_name(spec, cell, part) for part in parts]
        trials = trial_results(parts, results, names)
        return _cell_data(spec, cell, trials)

    def cell_seconds(self, spec: Any, cell: tuple[int, ...]) -> float:
        return spec.trials * _search_seconds(*spec.dimensions(*cell[:2])) + _WRITE_SECONDS

    def problems(self, spec: Any, read: Callable[[str], np.ndarray]) -> list[Problem]:
        return _problems(spec, read)

    def describe(self, spec: Any) -> list[str]:
        n_k, n_extra, n_start, trials = spec.shape
        layout = self.layout(spec)
        cells = n_k * n_extra * n_start
        sizes = [k * d for k in spec.grid.k for d in (k + e for e in spec.grid.extra)]
        seconds = sum(self.cell_seconds(spec, cell) for cell in layout.cells())
        per_point = 8 * (layout.sizes["eig"] + layout.sizes["row"] * layout.sizes["col"])
        options = spec.search
        flips = any(name != _RANDOM for name in spec.grid.start)
        lines = [
            f"grid: {n_k} k × {n_extra} extra × {n_start} start × {trials} trials "
            f"(k {min(spec.grid.k)}..{max(spec.grid.k)}, d = k + extra, k·d {min(sizes)}..{max(sizes)})",
            f"starts: {', '.join(spec.grid.start)}"
            + (f" (flip starts plus {spec.perturbation:g} × N(0, 1) per entry)" if flips else ""),
            f"points: {n_k * n_extra * n_start * trials} searches ({options.method}, then Newton steps to a "
            f"gradient norm <= {options.gradient_tolerance:g})",
            f"tasks: {cells} cells (k × extra × start), each its searches and one write",
            f"work: about {seconds:.3g} s of one core",
            f"memory: largest Hessian {max(sizes)} × {max(sizes)} ({8 * max(sizes) ** 2 / 1e6:.3g} MB); "
            f"cube about {per_point * n_k * n_extra * n_start * trials / 1e6:.3g} MB",
        ]
        if spec.perturbation == 0 and flips:
            lines.append("note: perturbation 0: the trials of a flip start are identical searches")
        return lines


def _where(spec: ReluSpec, cell: tuple[int, ...]) -> str:
    """``k[1] = 6, extra[0] = 0, start flip1``: a cell for messages."""
    i_k, i_extra, i_start = cell
    return (
        f"k[{i_k}] = {spec.grid.k[i_k]}, extra[{i_extra}] = {spec.grid.extra[i_extra]}, "
        f"start {spec.grid.start[i_start]}"
    )


def _cell_data(spec: ReluSpec, cell: tuple[int, ...], trials: Sequence[Any]) -> CellData:
    """A cell's blocks from one :class:`SearchResult` or :class:`CellFailure` per trial."""
    layout = ReluFamily().layout(spec)
    layout.check_cell(cell)
    k, d = spec.dimensions(*cell[:2])
    if len(trials) != spec.trials:
        raise ValueError(f"expected {spec.trials} results (one per trial), got {len(trials)}")
    arrays = {name: layout.empty(name) for name in layout.variables}
    errors = np.full(layout.block_shape(_POINT), "", dtype=STRING)
    messages: list[str] = []
    tolerance = spec.search.gradient_tolerance
    for trial, result in enumerate(trials):
        at = (0, 0, 0, trial)
        if isinstance(result, CellFailure):
            messages.append(result.message)
            errors[at] = f"search: {result.message}"
            continue
        if not isinstance(result, SearchResult):
            raise TypeError(
                f"trial {trial}: expected a SearchResult or a CellFailure, not {type(result).__name__}"
            )
        point, kind = result.point, result.classification
        if np.shape(point.W) != (k, d) or np.shape(kind.eigenvalues) != (k * d,):
            raise ValueError(
                f"trial {trial}: expected a {k} × {d} point and {k * d} eigenvalues, got "
                f"{np.shape(point.W)} and {np.shape(kind.eigenvalues)}"
            )
        arrays["loss"][at] = point.loss
        arrays["gradient_norm"][at] = point.gradient_norm
        arrays["kind"][at] = kind.kind
        arrays["hessian_index"][at] = kind.index
        arrays["nullity"][at] = kind.nullity
        arrays["isotropy"][at] = result.isotropy
        arrays["converged"][at] = point.converged
        arrays["iterations"][at] = point.iterations
        arrays["eigenvalues"][(*at, slice(0, k * d))] = kind.eigenvalues
        arrays["weights"][(*at, slice(0, k), slice(0, d))] = point.W
        if not (point.converged and point.gradient_norm <= tolerance):
            # Written for inspection, never marked done.
            why = (
                f"did not converge (gradient norm {point.gradient_norm:.3g} > {tolerance:g}): {point.message}"
            )
            messages.append(f"search at {_where(spec, cell)}, trial {trial}: {why}")
            errors[at] = f"search: {why}"
    return CellData(arrays=arrays, errors=errors, messages=tuple(messages))


def _problems(spec: ReluSpec, read: Callable[[str], np.ndarray]) -> list[Problem]:
    """(problem, mask over (k, extra, start, trial)) for :meth:`ReluFamily.problems`."""
    ks = np.array(spec.grid.k)
    ds = ks[:, None] + np.array(spec.grid.extra)[None, :]
    # Per (k, extra), broadcast over (start, trial, ...).
    kd = (ks[:, None] * ds)[:, :, None, None]
    eigenvalues = read("eigenvalues")
    inside = np.arange(eigenvalues.shape[-1]) < kd[..., None]
    present = np.where(inside, eigenvalues, 0.0)
    with np.errstate(invalid="ignore"):
        steps = np.diff(eigenvalues, axis=-1)
        descending = np.any(inside[..., 1:] & ~(steps >= 0), axis=-1)
    bad_eigenvalues = ~np.all(np.isfinite(present), axis=-1) | descending
    padding = np.any(~inside & ~np.isnan(eigenvalues), axis=-1)
    weights = read("weights")
    rows = np.arange(weights.shape[-2])[:, None] < ks[:, None, None, None, None, None]
    cols = np.arange(weights.shape[-1])[None, :] < ds[:, :, None, None, None, None]
    block = rows & cols
    bad_weights = np.any(block & ~np.isfinite(weights), axis=(-2, -1)) | np.any(
        ~block & ~np.isnan(weights), axis=(-2, -1)
    )

    # The classification again, from the stored eigenvalues and loss, as classify makes it.
    largest = np.max(np.abs(present), axis=-1)
    zero = EIGENVALUE_TOLERANCE * largest
    with np.errstate(invalid="ignore"):
        index = np.sum(inside & (eigenvalues < -zero[..., None]), axis=-1)
        nullity = np.sum(inside & (np.abs(eigenvalues) <= zero[..., None]), axis=-1)
    scale = np.array(
        [[_loss_scale(standard_teacher(int(k), int(d))) for d in row] for k, row in zip(ks, ds, strict=True)]
    )
    loss = read("loss")
    kind = read("kind")
    with np.errstate(invalid="ignore"):
        at_zero = np.abs(loss) <= LOSS_TOLERANCE * scale[:, :, None, None]
    expected = np.where(index > 0, KINDS[2], np.where(at_zero, KINDS[0], KINDS[1]))
    miscounted = (index != read("hessian_index")) | (nullity != read("nullity"))
    with np.errstate(invalid="ignore"):
        steep = ~(read("gradient_norm") <= spec.search.gradient_tolerance)
    return [
        ("eigenvalues missing, not finite or not ascending in their first k·d entries", bad_eigenvalues),
        ("eigenvalues not NaN after the first k·d", padding),
        ("weights not finite in their k × d block, or not NaN outside it", bad_weights),
        ("loss missing or not finite", ~np.isfinite(loss)),
        (f"gradient norm missing or above {spec.search.gradient_tolerance:g}", steep),
        ("done, but not converged", ~read("converged")),
        ("hessian_index or nullity disagrees with the eigenvalues", miscounted),
        (
            "kind disagrees with hessian_index and loss",
            np.asarray(kind, dtype=STRING) != expected.astype(STRING),
        ),
        ("isotropy missing", read("isotropy") == ""),
    ]
