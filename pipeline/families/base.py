"""What a model family gives the engine: its cube's layout, a cell's computations and their assembly.

A *family* (the GLM of ``shared/theory/glm.md``, Pennington–Bahri, …) is one :class:`Family`
object, registered by name in :mod:`pipeline.families`.  The sweep engine
(:mod:`pipeline.runner`) and the cube (:mod:`pipeline.store`) only talk to it through this
interface, so a family adds axes, variables and computations without a special case anywhere else:

* :meth:`Family.layout` — the cube: the point dimensions (those of ``status``, ``error`` and
  ``done``, e.g. ``c, loss, signal, trial``), the *cell* dimensions among them (one chunk wide: a
  cell is the unit of writing, e.g. ``c, signal``), every dimension's size, the coordinates and
  the data variables;
* :meth:`Family.parts` and :meth:`Family.compute` — a cell's independent computations (a theory
  solve, a Monte Carlo draw, a critical-point search), each a plain function of the spec, the cell
  and a small hashable description, run anywhere;
* :meth:`Family.assemble` — their results (or :class:`CellFailure`) to the cell's block of every
  variable and the error of every point (``""`` where the point is complete).

This module knows nothing of Dask or Zarr.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Protocol, TypeVar

import numpy as np

__all__ = [
    "CellData",
    "CellFailure",
    "Family",
    "Layout",
    "Spec",
    "Variable",
    "attempt",
    "trial_parts",
    "trial_results",
]

_T = TypeVar("_T")

#: numpy's variable-length UTF-8 strings: the encoding of every string variable of a cube.
STRING = np.dtypes.StringDType()


@dataclass(frozen=True)
class CellFailure:
    """A computation that failed for good (after its retries), in place of its result.

    Attributes
    ----------
    message : str
        Why it failed, e.g. ``"theory at c[0], loss[1], signal[2]: RuntimeError: … (3 attempts)"``.
    """

    message: str


def attempt(
    what: str,
    attempts: int,
    compute: Callable[[], _T],
    *,
    reraise: Callable[[Exception], bool] | None = None,
) -> _T | CellFailure:
    """``compute()``, tried up to ``attempts`` times; a :class:`CellFailure` if every try raised.

    Its message is ``"<what>: <Error>: <message> (<n> attempts)"``.  An exception for which
    ``reraise`` is true is raised at once (no try would get past it).
    """
    error: Exception | None = None
    for _ in range(attempts):
        try:
            return compute()
        except Exception as exc:  # the point fails, the run goes on
            if reraise is not None and reraise(exc):
                raise
            error = exc
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return CellFailure(f"{what}: {type(error).__name__}: {error} ({tries})")


def trial_parts(kind: str, trials: int, per_part: int) -> list[Part]:
    """``(kind, first, last)`` parts of at most ``per_part`` consecutive trials, covering them all.

    >>> trial_parts("montecarlo", 5, 2)
    [('montecarlo', 0, 2), ('montecarlo', 2, 4), ('montecarlo', 4, 5)]
    """
    return [(kind, first, min(first + per_part, trials)) for first in range(0, trials, per_part)]


def trial_results(parts: Sequence[Part], results: Sequence[Any], names: Sequence[str]) -> list[Any]:
    """One result per trial from the results of :func:`trial_parts`: a list per part, or a failure.

    A part that failed for good (:class:`CellFailure`) fails each of its trials.

    Parameters
    ----------
    parts : sequence of Part
        ``(kind, first, last)`` parts, in trial order.
    results : sequence
        Their results, in the same order.
    names : sequence of str
        The parts' names (:meth:`Family.part_name`), for the error of a malformed result.

    Raises
    ------
    ValueError
        If the counts disagree, or a part's result is not a list of its ``last − first`` trials.

    Examples
    --------
    >>> parts = trial_parts("draw", 3, 2)
    >>> trial_results(parts, [["a", "b"], CellFailure("lost")], ["draw 0-1", "draw 2"])
    ['a', 'b', CellFailure(message='lost')]
    """
    if not len(parts) == len(results) == len(names):
        raise ValueError(f"expected {len(parts)} results (one per part), got {len(results)}")
    trials: list[Any] = []
    for part, result, name in zip(parts, results, names, strict=True):
        count = int(part[2]) - int(part[1])
        if isinstance(result, CellFailure):
            trials += [result] * count
        elif isinstance(result, list) and len(result) == count:
            trials += result
        else:
            raise ValueError(f"{name}: expected {count} trials' results")
    return trials


class Spec(Protocol):
    """What the engine needs of a validated sweep, whatever its family."""

    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def seed(self) -> int: ...

    @property
    def source_text(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...

    def differences(self, other: Any) -> list[str]: ...


@dataclass(frozen=True)
class Variable:
    """A data variable of a cube: its dimensions, numpy type and description."""

    dims: tuple[str, ...]
    dtype: np.dtype[Any]
    description: str


@dataclass(frozen=True)
class Layout:
    """The cube of a sweep.

    Attributes
    ----------
    point_dims : tuple of str
        The dimensions of a point: those of ``status``, ``error`` and ``done``.
    cell_dims : tuple of str
        The point dimensions along which a cell is one wide (the others are whole in every cell).
    sizes : mapping of str to int
        The size of every dimension.
    coords : mapping of str to (str or tuple of str, numpy.ndarray)
        Coordinate variables: name to (dimension or dimensions, values).
    variables : mapping of str to Variable
        The family's data variables, in writing order (``status``, ``error`` and ``done`` are the
        engine's and come after).
    attrs : mapping
        Attributes of the cube that the family adds (e.g. the Monte Carlo method).
    """

    point_dims: tuple[str, ...]
    cell_dims: tuple[str, ...]
    sizes: Mapping[str, int]
    coords: Mapping[str, tuple[str | tuple[str, ...], np.ndarray]]
    variables: Mapping[str, Variable]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for dim in self.cell_dims:
            if dim not in self.point_dims:
                raise ValueError(f"cell dimension {dim!r} is not a point dimension")
        for name, variable in self.variables.items():
            missing = [dim for dim in variable.dims if dim not in self.sizes]
            if missing:
                raise ValueError(f"{name}: dimensions without a size: {missing}")

    @property
    def cell_shape(self) -> tuple[int, ...]:
        """The number of cells along each cell dimension."""
        return tuple(self.sizes[dim] for dim in self.cell_dims)

    def cells(self) -> Iterator[tuple[int, ...]]:
        """Every cell, in grid order (last cell dimension fastest)."""
        return product(*(range(n) for n in self.cell_shape))

    def check_cell(self, cell: Sequence[int]) -> tuple[int, ...]:
        """``cell`` as a tuple of ints; :class:`IndexError` unless it is a cell of the grid."""
        if len(cell) != len(self.cell_dims):
            raise IndexError(f"a cell has {len(self.cell_dims)} indices {self.cell_dims}, not {len(cell)}")
        for dim, index, size in zip(self.cell_dims, cell, self.cell_shape, strict=True):
            if not 0 <= index < size:
                raise IndexError(f"{dim} index {index} out of range 0..{size - 1}")
        return tuple(int(index) for index in cell)

    def block_shape(self, dims: Sequence[str]) -> tuple[int, ...]:
        """The shape of a cell's block of a variable with dimensions ``dims``."""
        return tuple(1 if dim in self.cell_dims else self.sizes[dim] for dim in dims)

    def chunks(self, dims: Sequence[str]) -> tuple[int, ...]:
        """Chunks of a variable: one cell wide along the cell dimensions, whole (>= 1) along the rest."""
        return tuple(1 if dim in self.cell_dims else max(1, self.sizes[dim]) for dim in dims)

    def region(self, cell: Sequence[int]) -> dict[str, slice]:
        """Explicit slices of one cell along every dimension."""
        region = {dim: slice(0, size) for dim, size in self.sizes.items()}
        for dim, index in zip(self.cell_dims, self.check_cell(cell), strict=True):
            region[dim] = slice(index, index + 1)
        return region

    def describe_cell(self, cell: Sequence[int]) -> str:
        """``c[1], signal[0]``: a cell by its indices."""
        return ", ".join(f"{dim}[{index}]" for dim, index in zip(self.cell_dims, cell, strict=True))

    def empty(self, name: str) -> np.ndarray:
        """A cell's block of variable ``name`` filled with its fill value."""
        variable = self.variables[name]
        return np.full(self.block_shape(variable.dims), fill_value(variable.dtype), dtype=variable.dtype)


def fill_value(dtype: np.dtype[Any]) -> Any:
    """The fill value of a type in a cube: NaN, ``False``, 0 or ``""`` (what an unwritten chunk reads as)."""
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "T":
        return ""
    if dtype.kind == "b":
        return False
    return 0


@dataclass(frozen=True)
class CellData:
    """What :meth:`Family.assemble` makes of a cell's results.

    Attributes
    ----------
    arrays : dict of str to numpy.ndarray
        The cell's block of every data variable (:meth:`Layout.block_shape`).
    errors : numpy.ndarray
        Strings over the point dimensions' block: why each point failed, ``""`` where it is
        complete (then it is marked done).
    messages : tuple of str
        The failures of the cell's computations for the run's report, one per failed computation.
    """

    arrays: dict[str, np.ndarray]
    errors: np.ndarray
    messages: tuple[str, ...] = ()


#: A part of a cell's work: a small description, e.g. ``("theory", 1)``.
Part = tuple[str | int, ...]
#: A problem of done points that :meth:`Family.problems` finds: its description and its mask over
#: the point dimensions.
Problem = tuple[str, np.ndarray]


class Family(ABC):
    """A model family: the interface of the engine (see the module docstring)."""

    #: The name sweeps give in their ``family`` key.
    name: str

    @abstractmethod
    def parse(self, data: Mapping[str, Any], *, source_text: str | None = None) -> Spec:
        """Validate a sweep's data (the parsed YAML; ``source_text`` its text, kept in the cube's
        attributes); raise :class:`~pipeline.errors.SweepError` naming the YAML path at fault."""

    @abstractmethod
    def layout(self, spec: Any) -> Layout:
        """The sweep's cube."""

    @abstractmethod
    def parts(self, spec: Any, cell: tuple[int, ...]) -> list[Part]:
        """A cell's independent computations, in the order :meth:`assemble` takes their results."""

    @abstractmethod
    def part_name(self, spec: Any, cell: tuple[int, ...], part: Part) -> str:
        """A computation for messages, e.g. ``theory at c[0], loss[1], signal[2]``."""

    @abstractmethod
    def compute(self, spec: Any, cell: tuple[int, ...], part: Part, attempts: int) -> Any:
        """Run one computation (a part of :meth:`parts`).

        ``attempts`` is for a part made of several computations that fail apart (each tried that
        many times); the engine itself tries a part that raises up to ``attempts`` times.
        """

    @abstractmethod
    def assemble(self, spec: Any, cell: tuple[int, ...], results: Sequence[Any]) -> CellData:
        """A cell's blocks from its parts' results (any of them a :class:`CellFailure`).

        Raises
        ------
        TypeError, ValueError
            For results of the wrong kind or shape.
        """

    @abstractmethod
    def cell_seconds(self, spec: Any, cell: tuple[int, ...]) -> float:
        """A rough one-core cost of a cell, for batching cheap cells (a factor 2 off is harmless)."""

    @abstractmethod
    def problems(self, spec: Any, read: Callable[[str], np.ndarray]) -> list[Problem]:
        """What is wrong with points, from the cube's variables (``read(name)``), for ``verify``.

        Each mask is over the point dimensions; the engine reports it where a point is done.
        """

    def remarks(self, spec: Any, read: Callable[[str], np.ndarray]) -> list[Problem]:
        """Results worth a look that are not problems, for ``status``: ``(what, mask)`` pairs.

        Each mask is over the point dimensions; the engine counts it where a point is done.  A
        family whose every doubtful result fails its point has none (the default).
        """
        return []

    @abstractmethod
    def describe(self, spec: Any) -> list[str]:
        """The lines ``hessweep validate`` prints after the sweep's name: grid, tasks, work, memory."""
