"""Sweep definitions: YAML ⇒ validated :class:`SweepSpec` ⇒ grid points and seeds.

A sweep file (``sweeps/NAME.yaml``, format in ``shared/DESIGN.md``) names a response model, the
three grid axes ``c``, ``loss`` and ``signal``, the scenario scalar that the signal axis sets, the
scenario fields held fixed, the Monte Carlo dimension ``p`` and the number of trials.  Everything is
checked before anything runs: every error is a :class:`~pipeline.errors.SweepError` naming the YAML
path of the field at fault, e.g. ``grid.c[1]: must be > 0``.

Only plain YAML data is read (no tags that construct objects); duplicate keys are refused rather
than silently overwritten.  This module knows nothing of Dask or Zarr.
"""

from __future__ import annotations

import codecs
import copy
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any, ClassVar

import numpy as np
import yaml

from pipeline import schema
from pipeline.errors import ScenarioError, SweepError
from pipeline.lanczos import DTYPES
from pipeline.scenario import Scenario
from pipeline.schema import MAX_CELLS

__all__ = [
    "MAX_CELLS",
    "MAX_P",
    "MONTECARLO_METHODS",
    "SIGNAL_TARGETS",
    "Grid",
    "MonteCarloOptions",
    "SweepSpec",
    "TheoryOptions",
    "load_sweep",
    "parse_sweep",
    "spec_from_dict",
]

#: Scenario scalars that the signal axis can set: a vector's norm or angle, as ``vector.scalar``, or
#: ``cov.eigenvalues[J]``, the eigenvalue of covariance block ``J`` (an index from 0 into
#: ``fixed.cov.eigenvalues``, which holds ``null`` in its place).
SIGNAL_TARGETS = ("mu.norm", "w_star.norm", "w.norm", "mu.angle", "w.angle", "cov.eigenvalues[J]")

# Sanity limits, not limits of the method: a sweep beyond them is almost surely a typo (an extra
# zero in ``num`` or ``p``), and would only fail hours later for lack of memory or disk.
#: Monte Carlo methods (``montecarlo.method``).
MONTECARLO_METHODS = ("dense", "lanczos")
#: Largest Monte Carlo dimension: one dense ``p × p`` Hessian at 10⁵ is 80 GB.
MAX_P = 100_000
# Most samples n = round(p / c) of a draw: its n × p features at 10⁹ are 16 GB even at p = 2.
_MAX_SAMPLES = 10**9
# Largest sweep text, in bytes of a file or characters of a string.  A sweep is a few kB, one with an
# axis of 10⁴ values written out about 100 kB; the pure-Python YAML parser (kept for its exact error
# messages) spends about 10 µs and 1 kB of memory a character, so beyond this limit reading alone
# would take minutes and gigabytes.
_MAX_TEXT = 256 * 1024
# Deepest YAML nesting: the deepest field, `fixed.cov.eigenvalues[J]`, is 5 levels down.  The limit
# keeps the composer's recursion and the scanner's look-ahead over deep flow nests bounded.
_MAX_DEPTH = 32
# Most YAML nodes of a document, aliases counted at each use: literal text within _MAX_TEXT holds
# under 2 × 10⁵, so only aliases of aliases ("billion laughs") come near it.
_MAX_NODES = 10**6
# Fewest points of the theory's density grid that resolve a bulk with one or two edges.
_MIN_THEORY_POINTS = 32

_TOP_KEYS = (
    "family",
    "name",
    "p",
    "trials",
    "seed",
    "model",
    "grid",
    "signal",
    "fixed",
    "montecarlo",
    "theory",
)
_REQUIRED_KEYS = ("name", "p", "grid")
_GRID_KEYS = ("c", "loss", "signal")
_FIXED_KEYS = ("mu", "w_star", "w", "cov", "labels")
_LANCZOS_KEYS = ("probes", "steps", "dtype", "memory_gb")
_MONTECARLO_KEYS = ("k", "method", *_LANCZOS_KEYS)
# The strings that fixed.w may be (Scenario's); a signal that sets w's norm or angle needs a mapping.
_W_NAMES = ("w_star", "zero")
# At most 9 digits: a covariance has fewer than MAX_P / 2 blocks, and int() refuses > 4300 digits.
_COV_TARGET = re.compile(r"cov\.eigenvalues\[(0|[1-9][0-9]{0,8})\]")
# Longest message taken from a ScenarioError (which may quote the value it refuses in full).
_SHOWN_REASON = 300


# ----------------------------------------------------------------------------------------------
# The specification
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """The three axes of a sweep, expanded to their values (in file order)."""

    c: tuple[float, ...]
    loss: tuple[str, ...]
    signal: tuple[float, ...]


@dataclass(frozen=True)
class MonteCarloOptions:
    """Monte Carlo settings.

    Attributes
    ----------
    k : int
        Extreme eigenpairs kept on each side of the spectrum.
    method : {"dense", "lanczos"}
        ``dense``: form ``H`` and compute all its eigenvalues (:mod:`pipeline.montecarlo`);
        ``lanczos``: never form ``H``, compute a quadrature of its spectral measure and its extreme
        Ritz pairs by block Lanczos (:mod:`pipeline.lanczos`), for large ``p``.
    probes, steps : int
        ``lanczos`` only: block size and number of steps of the recurrence.
    dtype : {"float64", "float32"}
        ``lanczos`` only: data type of the features and of the products with them.
    memory_gb : float
        ``lanczos`` only: largest size of ``X`` held in memory, in GB (10⁹ bytes); beyond it the
        features are generated again, block by block, for every product.
    """

    k: int = 2
    method: str = "dense"
    probes: int = 4
    steps: int = 80
    dtype: str = "float64"
    memory_gb: float = 16.0

    def to_dict(self) -> dict[str, Any]:
        """The options as a sweep file writes them (the ``lanczos`` ones only for that method)."""
        if self.method == "dense":
            return {"k": self.k}
        return {
            "k": self.k,
            "method": self.method,
            "probes": self.probes,
            "steps": self.steps,
            "dtype": self.dtype,
            "memory_gb": self.memory_gb,
        }


@dataclass(frozen=True)
class TheoryOptions:
    """Theory settings: ``points`` abscissae of the limiting density."""

    points: int = 400


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep definition; build it with :func:`parse_sweep` or :func:`load_sweep`.

    The constructor does not validate: a spec made by hand may describe impossible scenarios.
    Two specs compare equal when their definitions are equal (:meth:`to_dict`), whatever the
    formatting or comments of their YAML text.

    Attributes
    ----------
    name : str
        Letters, digits, ``-`` and ``_``: it names the store, ``results/<name>.zarr``.
    p : int
        Monte Carlo dimension, ``2 <= p <= MAX_P``; ``n = round(p / c)``.
    trials : int
        Monte Carlo draws per ``(c, signal)`` point, ``>= 1``.
    seed : int
        Root of every draw's seed, ``>= 0`` (see :meth:`seed_for`).
    model : str or mapping
        The response model, normalised as :class:`~pipeline.scenario.Scenario` stores it.
    grid : Grid
        The values of the ``c``, ``loss`` and ``signal`` axes.
    signal_target : str
        The scenario scalar that the signal axis sets, one of :data:`SIGNAL_TARGETS` (with an
        index in place of ``J``, e.g. ``cov.eigenvalues[1]``).
    fixed : mapping
        The other scenario fields (``mu``, ``w_star``, ``w``, ``cov``, ``labels``), normalised
        with their defaults filled in, minus the scalar that the signal axis sets.  Treat it
        as read-only.
    montecarlo : MonteCarloOptions
    theory : TheoryOptions
    source_text : str
        The YAML text the spec was read from, kept for the cube's attributes.
    """

    name: str
    p: int
    trials: int
    seed: int
    model: str | Mapping[str, Any]
    grid: Grid
    signal_target: str = "mu.norm"
    fixed: Mapping[str, Any] = field(default_factory=dict)
    montecarlo: MonteCarloOptions = field(default_factory=MonteCarloOptions)
    theory: TheoryOptions = field(default_factory=TheoryOptions)
    source_text: str = field(default="", compare=False, repr=False)
    #: The family of these sweeps (:mod:`pipeline.families.glm`).
    family: ClassVar[str] = "glm"

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    # -- shape and iteration ------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n_c, n_loss, n_signal, trials)``: the cube's cells."""
        return len(self.grid.c), len(self.grid.loss), len(self.grid.signal), self.trials

    def points(self) -> Iterator[tuple[int, int, int]]:
        """Iterate over the theory points ``(i_c, i_loss, i_signal)``, last index fastest."""
        n_c, n_loss, n_signal, _ = self.shape
        return product(range(n_c), range(n_loss), range(n_signal))

    def monte_carlo_tasks(self) -> Iterator[tuple[int, int, int]]:
        """Iterate over the Monte Carlo draws ``(i_c, i_signal, trial)``, last index fastest.

        One draw of ``X, y`` serves every loss of its point, so the loss is not an index here.
        """
        n_c, _, n_signal, trials = self.shape
        return product(range(n_c), range(n_signal), range(trials))

    def scenario(self, i_c: int, i_loss: int, i_signal: int) -> Scenario:
        """The scenario of one grid point.

        Parameters
        ----------
        i_c, i_loss, i_signal : int
            Indices along the ``c``, ``loss`` and ``signal`` axes, from 0.

        Returns
        -------
        Scenario
            With ``c`` and ``loss`` from the grid, the signal value set into the field named
            by :attr:`signal_target`, and the rest from :attr:`fixed`.

        Raises
        ------
        IndexError
            For an index outside its axis.
        """
        n_c, n_loss, n_signal, _ = self.shape
        _check_index(i_c, n_c, "i_c")
        _check_index(i_loss, n_loss, "i_loss")
        _check_index(i_signal, n_signal, "i_signal")
        return self.scenario_at(self.grid.c[i_c], self.grid.loss[i_loss], self.grid.signal[i_signal])

    def scenario_at(self, c: float, loss: str, signal: float) -> Scenario:
        """The scenario at any ``(c, loss, signal)``, on the grid or between its values.

        The analysis solves the theory between grid values (to locate a phase transition far
        more finely than the grid); the fixed fields are the sweep's.

        Raises
        ------
        ScenarioError
            If the values make an invalid scenario (``c <= 0``, a negative norm, ...).

        Examples
        --------
        >>> text = "name: a\\np: 400\\nmodel: linear\\ngrid: {c: [0.5], loss: [square], signal: [1.0]}"
        >>> spec = parse_sweep(text)
        >>> spec.scenario_at(0.7, "square", 1.25).mu["norm"]
        1.25
        """
        fields = _set_signal(self.fixed, _target_parts(self.signal_target), float(signal))
        return Scenario(float(c), model=self.model, loss=loss, **fields)

    def check_cell(self, i_c: int, i_signal: int) -> None:
        """Raise :class:`IndexError` unless ``(i_c, i_signal)`` is a cell of the grid."""
        n_c, _, n_signal, _ = self.shape
        _check_index(i_c, n_c, "i_c")
        _check_index(i_signal, n_signal, "i_signal")

    def seed_for(self, i_c: int, i_signal: int, trial: int) -> tuple[int, int, int, int]:
        """The seed of one Monte Carlo draw: ``(seed, i_c, i_signal, trial)``.

        Pass it as the ``seed`` of :func:`pipeline.montecarlo.sample`.  It depends on grid indices
        only, so a re-run, a resume or another number of workers draws the same numbers, and every
        loss of a point sees the same ``X``.

        Raises
        ------
        IndexError
            For an index outside its axis.

        Examples
        --------
        >>> spec = parse_sweep('''
        ... name: demo
        ... p: 50
        ... seed: 7
        ... trials: 3
        ... grid: {c: [0.5, 1.0], loss: [logistic], signal: [0.0, 1.0]}
        ... ''')
        >>> spec.seed_for(1, 0, 2)
        (7, 1, 0, 2)
        """
        self.check_cell(i_c, i_signal)
        _check_index(trial, self.shape[3], "trial")
        return self.seed, int(i_c), int(i_signal), int(trial)

    def work_estimate(self) -> dict[str, int]:
        """A rough size of the sweep, for ``hessweep validate``.

        Returns
        -------
        dict
            ``points`` (grid points ``c × loss × signal``), ``theory_solves`` (one per point),
            ``monte_carlo_draws`` (one per ``c × signal × trial``), ``losses_per_draw``,
            ``monte_carlo_flops`` and ``monte_carlo_bytes`` (the largest draw's memory: ``X`` and
            what the method adds), with ``n = round(p / c)``.  Per draw and loss, ``dense``:
            ``n p²`` for the rank-``n`` update ``X D Xᵀ`` plus ``(4/3) p³`` for the
            tridiagonalisation, memory ``8(np + p²)``; ``lanczos``: ``4 n p d`` for the products
            and ``4 p d²`` for the reorthogonalisation (``d = probes × steps``), memory ``X`` in its
            data type (if held) plus the ``8 p d`` of the Krylov basis.

        Examples
        --------
        >>> spec = parse_sweep('''
        ... name: demo
        ... p: 100
        ... grid: {c: [1.0], loss: [logistic, exponential], signal: [0.0, 1.0]}
        ... ''')
        >>> spec.work_estimate()  # doctest: +NORMALIZE_WHITESPACE
        {'points': 4, 'theory_solves': 4, 'monte_carlo_draws': 2, 'losses_per_draw': 2,
         'monte_carlo_flops': 9333333, 'monte_carlo_bytes': 160000}
        """
        n_c, n_loss, n_signal, trials = self.shape
        p, options = self.p, self.montecarlo
        per_loss = sum(self.draw_flops(i_c) for i_c in range(n_c))
        samples = [round(p / c) for c in self.grid.c]
        if options.method == "dense":
            memory = max(8 * (n * p + p**2) for n in samples)
        else:
            held = [n * p * np.dtype(options.dtype).itemsize for n in samples]
            krylov = 8 * p * options.probes * options.steps
            memory = max(x if x <= options.memory_gb * 1e9 else 0 for x in held) + krylov
        return {
            "points": n_c * n_loss * n_signal,
            "theory_solves": n_c * n_loss * n_signal,
            "monte_carlo_draws": n_c * n_signal * trials,
            "losses_per_draw": n_loss,
            "monte_carlo_flops": round(per_loss * n_signal * trials * n_loss),
            "monte_carlo_bytes": int(memory),
        }

    def draw_flops(self, i_c: int) -> float:
        """Rough flops of one Monte Carlo draw at ``c[i_c]`` analysed under one loss.

        ``dense``: ``n p² + (4/3) p³``; ``lanczos``: ``4 n p d + 4 p d²`` with ``d = probes × steps``
        (see :meth:`work_estimate`).
        """
        p, n, options = self.p, round(self.p / self.grid.c[i_c]), self.montecarlo
        if options.method == "dense":
            return n * p**2 + 4 * p**3 / 3
        d = options.probes * options.steps
        return 4 * n * p * d + 4 * p * d**2

    # -- comparison ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain Python data, in sweep-file form with every axis as a list.

        Equal for two specs iff they define the same sweep; ``parse_sweep(yaml.safe_dump(d))``
        gives the spec back.

        Examples
        --------
        >>> spec = parse_sweep('''
        ... name: demo
        ... p: 50
        ... grid: {c: [0.5], loss: [square], signal: {start: 0, stop: 1, num: 3}}
        ... ''')
        >>> spec.to_dict()["grid"]
        {'c': [0.5], 'loss': ['square'], 'signal': [0.0, 0.5, 1.0]}
        >>> parse_sweep(yaml.safe_dump(spec.to_dict())) == spec
        True
        """
        return {
            "name": self.name,
            "p": self.p,
            "trials": self.trials,
            "seed": self.seed,
            "model": copy.deepcopy(_plain(self.model)),
            "grid": {
                "c": list(self.grid.c),
                "loss": list(self.grid.loss),
                "signal": list(self.grid.signal),
            },
            "signal": self.signal_target,
            "fixed": copy.deepcopy(_plain(self.fixed)),
            "montecarlo": self.montecarlo.to_dict(),
            "theory": {"points": self.theory.points},
        }

    def differences(self, other: SweepSpec) -> list[str]:
        """What differs between two definitions, one ``"path: mine != theirs"`` line per field.

        Examples
        --------
        >>> a = parse_sweep("name: a\\np: 400\\ngrid: {c: [0.5], loss: [logistic], signal: [1.0]}")
        >>> b = parse_sweep("name: a\\np: 800\\ngrid: {c: [1.0], loss: [logistic], signal: [1.0]}")
        >>> a.differences(b)
        ['p: 400 != 800', 'grid.c: [0.5] != [1.0]']
        >>> a.differences(a)
        []
        """
        return schema.differences(self.to_dict(), other.to_dict())

    @classmethod
    def from_dict(cls, data: Any, *, source_text: str | None = None) -> SweepSpec:
        """Validate a sweep given as Python data (the parsed YAML document).

        Parameters
        ----------
        data : mapping
            The sweep, as in a sweep file.
        source_text : str, optional
            The text it came from; by default the YAML dump of the validated definition.

        Raises
        ------
        SweepError
            Naming the YAML path of the first field at fault.
        """
        spec = _validate(data)
        text = yaml.safe_dump(spec.to_dict(), sort_keys=False) if source_text is None else source_text
        return replace(spec, source_text=text)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def load_sweep(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate a sweep file.

    Parameters
    ----------
    path : str or path-like
        A UTF-8 YAML file.

    Returns
    -------
    SweepSpec

    Raises
    ------
    SweepError
        For text that is not UTF-8, not YAML, or not a valid sweep, and for a file of more than
        256 kB (a sanity limit); its ``source`` is ``path``.
    OSError
        If the file cannot be read.

    See Also
    --------
    parse_sweep
    """
    source = os.fspath(path)
    with open(path, "rb") as file:
        # Read one byte past the limit, never the whole of a huge (or endless) file.
        raw = file.read(_MAX_TEXT + 1)
    if len(raw) > _MAX_TEXT:
        raise SweepError(schema.ROOT, f"more than {_MAX_TEXT} bytes {_TOO_LONG}", source=source)
    # The byte order mark is stripped by hand so that an error's offset counts from the file's start.
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        reason = f"not UTF-8 text: byte 0x{raw[offset]:02x} at offset {offset} cannot be decoded"
        raise SweepError(schema.ROOT, reason, source=source) from None
    return parse_sweep(text, source=source)


def parse_sweep(text: str, *, source: str = "<string>") -> SweepSpec:
    """Validate a sweep given as YAML text.

    Parameters
    ----------
    text : str
        The sweep, in the format of ``shared/DESIGN.md``.  Required keys: ``name``, ``p`` and
        ``grid`` (with ``c``, ``loss`` and ``signal``).  Defaults: ``trials: 1``, ``seed: 0``,
        ``model: logistic``, ``signal: mu.norm``, ``fixed: {}``, ``montecarlo: {k: 2}``,
        ``theory: {points: 400}``.  An axis is a list or ``{start, stop, num, scale}`` with
        ``scale`` ``linear`` (the default, :func:`numpy.linspace`) or ``log``
        (:func:`numpy.geomspace`).  ``signal`` names the scalar the signal axis sets, one of
        :data:`SIGNAL_TARGETS`: a vector's norm or angle, which ``fixed`` must then leave out, or
        ``cov.eigenvalues[J]``, the eigenvalue of covariance block ``J`` (from 0), for which
        ``fixed.cov.eigenvalues`` holds ``null`` at ``J`` and the signal values must be ``> 0``.
    source : str, default ``"<string>"``
        Where the text came from, stored in the ``source`` of any error.

    Returns
    -------
    SweepSpec
        With :attr:`SweepSpec.source_text` set to ``text``.

    Raises
    ------
    SweepError
        Naming the YAML path (``"<root>"`` for the document) and the reason.  Besides wrong
        types, unknown keys and impossible values, the sanity limits :data:`MAX_CELLS` and
        :data:`MAX_P` are enforced, and others on the text (256 k characters), its nesting (32
        levels) and its size with aliases expanded, the samples ``round(p / c)`` (10⁹), the
        theory's points (10⁵) and the name's length (128).  Only plain YAML data is read: a tag
        that would construct an object is refused.  Every scenario of the grid must be valid: one
        is built for each ``(c, loss)`` at the first and at the last signal value.

    Examples
    --------
    >>> spec = parse_sweep('''
    ... name: demo
    ... p: 200
    ... trials: 2
    ... grid:
    ...   c: {start: 0.25, stop: 1.0, num: 3, scale: log}
    ...   loss: [logistic, exponential]
    ...   signal: [0.0, 1.5]
    ... fixed: {mu: {angle: 90}}
    ... ''')
    >>> spec.shape
    (3, 2, 2, 2)
    >>> spec.grid.c
    (0.25, 0.5, 1.0)
    >>> spec.scenario(1, 0, 1).mu
    {'norm': 1.5, 'spread': False, 'angle': 90.0}
    >>> spec = parse_sweep('''
    ... name: two-blocks
    ... p: 200
    ... grid: {c: [0.125], loss: [logistic], signal: [2.0, 4.0]}
    ... signal: cov.eigenvalues[1]
    ... fixed: {cov: {eigenvalues: [1, null], weights: [0.5, 0.5]}}
    ... ''')
    >>> spec.scenario(0, 0, 1).cov
    {'eigenvalues': [1.0, 4.0], 'weights': [0.5, 0.5]}
    >>> spec.fixed["cov"]
    {'eigenvalues': [1.0, None], 'weights': [0.5, 0.5]}
    >>> parse_sweep("name: demo\\np: 1\\ngrid: {c: [1.0], loss: [square], signal: [0.0]}")
    Traceback (most recent call last):
    ...
    pipeline.errors.SweepError: p: must be >= 2
    """
    try:
        if len(text) > _MAX_TEXT:
            raise SweepError(schema.ROOT, f"more than {_MAX_TEXT} characters {_TOO_LONG}")
        data = _safe_load(text)
        return spec_from_dict(data, source_text=text)
    except SweepError as error:
        error.source = source
        raise


def spec_from_dict(data: Any, *, source_text: str | None = None) -> Any:
    """Validate a sweep of any family given as Python data (a parsed sweep file, a cube's ``spec``).

    The ``family`` key (default ``glm``) names the family (:data:`pipeline.families.FAMILIES`),
    which validates the rest; ``glm`` gives a :class:`SweepSpec`.

    Raises
    ------
    SweepError
        Naming the YAML path of the first field at fault (``family`` for an unknown family).
    """
    from pipeline.families import FAMILIES

    family = data.get("family", "glm") if isinstance(data, Mapping) else "glm"
    if not isinstance(family, str) or family not in FAMILIES:
        raise SweepError("family", f"must be one of {', '.join(FAMILIES)}, not {schema.shown(family)}")
    return FAMILIES[family].parse(data, source_text=source_text)


_TOO_LONG = "(a sanity limit: a sweep is a few kB; write a long axis as {start, stop, num})"


def _safe_load(text: str) -> Any:
    """``yaml.safe_load``, refusing object tags, duplicate keys, bad scalars and alias bombs by path."""
    loader = None
    try:
        loader = _Loader(text)  # which reads the text for unprintable characters at once
        node = loader.get_single_node()
        return None if node is None else _PlainData(loader).construct(node)
    except yaml.MarkedYAMLError as error:
        raise SweepError(schema.ROOT, _yaml_reason(error)) from None
    except yaml.reader.ReaderError as error:
        where = f"character #x{error.character:04x} at offset {error.position}"
        raise SweepError(schema.ROOT, f"invalid YAML: {where}: {error.reason}") from None
    except yaml.YAMLError as error:
        raise SweepError(schema.ROOT, f"invalid YAML: {_one_line(str(error))}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_reason(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = "; ".join(part for part in (error.context, error.problem) if part)
    return f"invalid YAML{where}: {_one_line(what)}"


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing nesting deeper than ``_MAX_DEPTH`` as it reads, by path.

    The composer recurses once per level, and the scanner, which reads up to 1024 characters
    ahead of the composer, spends time on each token in proportion to the depth of the flow
    collections (``[[[...``) it is in: a deep nest must be stopped before either runs away.  The
    composer names the node at the depth limit; the scanner the node that the composer is in
    (the field holding the nest, or the list or mapping holding that) and the place in the text.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._paths: list[str] = []

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= _MAX_DEPTH:
            path = self._paths[-1] if self._paths else schema.ROOT
            mark = self.get_mark()
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            raise SweepError(path, f"nested deeper than {_MAX_DEPTH} levels (at {where})")
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if parent is None:
            path = schema.ROOT
        elif isinstance(index, yaml.Node):  # the value of a mapping's key
            path = schema.join(
                self._paths[-1], index.value if isinstance(index, yaml.ScalarNode) else "<key>"
            )
        elif isinstance(index, int):  # an item of a sequence
            path = f"{self._paths[-1]}[{index}]"
        else:  # a mapping's key
            path = self._paths[-1]
        if len(self._paths) >= _MAX_DEPTH:
            raise SweepError(path, f"nested deeper than {_MAX_DEPTH} levels")
        self._paths.append(path)
        try:
            return super().compose_node(parent, index)
        finally:
            self._paths.pop()


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _PlainData:
    """Check a composed YAML document node by node and construct it, naming the path of any fault.

    Refused: tags that are not plain data, duplicate keys, recursive aliases, scalars that their
    tag cannot read (``2001-13-45``, ``!!int x``), and, counting each alias at every use, more
    than ``_MAX_NODES`` nodes or ``_MAX_DEPTH`` levels.  The nodes are walked in document order,
    and an alias always follows its anchor, so each node is checked and constructed once.
    """

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self._loader = loader
        self._shapes: dict[int, tuple[int, int]] = {}  # id(node): (nodes, depth) with aliases expanded
        self._open: set[int] = set()  # the nodes being walked: an alias to one of them is recursive

    def construct(self, node: yaml.Node) -> Any:
        self._walk(node, schema.ROOT)
        return self._loader.construct_object(node, deep=True)

    def _walk(self, node: yaml.Node, path: str) -> tuple[int, int]:
        key = id(node)
        if key in self._open:
            raise SweepError(path, "recursive YAML alias")
        if key in self._shapes:
            return self._shapes[key]
        if node.tag not in yaml.SafeLoader.yaml_constructors:
            reason = f"YAML tag {schema.shown(node.tag)} is not allowed: a sweep holds plain data only"
            raise SweepError(path, reason)
        self._open.add(key)
        size, depth = 1, 0
        for child, child_path in self._children(node, path):
            child_size, child_depth = self._walk(child, child_path)
            size, depth = size + child_size, max(depth, child_depth)
        self._open.discard(key)
        depth += 1
        if depth > _MAX_DEPTH:
            raise SweepError(path, f"nested deeper than {_MAX_DEPTH} levels (through YAML aliases)")
        if size > _MAX_NODES:
            raise SweepError(path, f"expands to more than {_MAX_NODES} values through YAML aliases")
        self._build(node, path)
        self._shapes[key] = size, depth
        return size, depth

    @staticmethod
    def _children(node: yaml.Node, path: str) -> Iterator[tuple[yaml.Node, str]]:
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                yield item, f"{path}[{i}]"
        elif isinstance(node, yaml.MappingNode):
            lines: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if key.tag == _MERGE_TAG:
                    yield value, path
                    continue
                yield key, path
                child = schema.join(path, key.value if isinstance(key, yaml.ScalarNode) else "<key>")
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    first = lines.get((key.tag, key.value))
                    if first is not None:
                        raise SweepError(child, f"duplicate key (lines {first} and {line})")
                    lines[key.tag, key.value] = line
                yield value, child

    def _build(self, node: yaml.Node, path: str) -> None:
        """Construct ``node`` (its children are built already), naming its path if that fails."""
        try:
            self._loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as error:
            raise SweepError(path, _yaml_reason(error)) from None
        except (ValueError, KeyError, AttributeError, OverflowError) as error:
            # What PyYAML's safe constructors raise for a scalar that its tag, resolved from its
            # look or written, cannot read: a date 2001-13-45, an int of > 4300 digits, !!bool x.
            kind = node.tag.rsplit(":", 1)[-1]
            detail = f" ({_one_line(str(error).split(';')[0])})" if isinstance(error, ValueError) else ""
            raise SweepError(
                path, f"must be a valid YAML {kind}, not {schema.shown(node.value)}{detail}"
            ) from None


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def _validate(data: Any) -> SweepSpec:
    top = schema.document(data, _TOP_KEYS)
    for key in _REQUIRED_KEYS:
        if key not in top:
            raise SweepError(key, "is required")

    name = schema.name(top["name"])
    p = schema.integer(top["p"], "p", minimum=2)
    if p > MAX_P:
        raise SweepError("p", f"must be <= {MAX_P} (a sanity limit: one dense p × p matrix is 8p² bytes)")
    trials = schema.integer(top.get("trials", 1), "trials", minimum=1)
    seed = schema.integer(top.get("seed", 0), "seed", minimum=0)
    target = top.get("signal", "mu.norm")
    if not isinstance(target, str) or not (target in SIGNAL_TARGETS[:-1] or _COV_TARGET.fullmatch(target)):
        hint = " (the signal values go under grid.signal)" if not isinstance(target, str) else ""
        raise SweepError(
            "signal", f"must be one of {', '.join(SIGNAL_TARGETS)}, not {schema.shown(target)}{hint}"
        )

    grid = _grid(top["grid"], trials)
    for i, c in enumerate(grid.c):
        samples = p / c  # inf for a subnormal c
        if samples > _MAX_SAMPLES:
            reason = (
                f"p = {p} at c = {c:g} gives n = round(p/c) = {samples:.3g} samples, "
                f"more than the sanity limit of {_MAX_SAMPLES}"
            )
            raise SweepError(f"grid.c[{i}]", reason)
        if round(samples) < 1:
            raise SweepError(f"grid.c[{i}]", f"p = {p} at c = {c:g} gives n = round(p/c) = 0 samples")

    fixed = _fixed(top.get("fixed"), target, grid.signal)
    _check_huge_integers(fixed, "fixed")
    _check_huge_integers(top.get("model"), "model")
    montecarlo = _montecarlo(top.get("montecarlo"), p)
    theory = TheoryOptions(**_options(top.get("theory"), "theory", {"points": _MIN_THEORY_POINTS}))
    if theory.points > schema.MAX_THEORY_POINTS:
        raise SweepError("theory.points", f"must be <= {schema.MAX_THEORY_POINTS} (a sanity limit)")

    spec = SweepSpec(
        name=name,
        p=p,
        trials=trials,
        seed=seed,
        model=top.get("model", "logistic"),
        grid=grid,
        signal_target=target,
        fixed=fixed,
        montecarlo=montecarlo,
        theory=theory,
    )
    first = _check_scenarios(spec)
    if "cov" in fixed:
        try:
            first.covariance.block_sizes(p)
        except ValueError as error:
            raise SweepError("fixed.cov.weights", str(error)) from None
    return _normalised(spec, first)


def _grid(value: Any, trials: int) -> Grid:
    grid = schema.mapping(value, "grid", _GRID_KEYS)
    for key in _GRID_KEYS:
        if key not in grid:
            raise SweepError(f"grid.{key}", "is required")
    # The cells are counted before any axis is read, so that a huge grid costs nothing to refuse.
    # An axis whose length cannot be told is malformed, and refused below as it is read.
    lengths = [length for key in _GRID_KEYS if (length := schema.axis_length(grid[key])) is not None]
    if len(lengths) == len(_GRID_KEYS):
        n_c, n_loss, n_signal = lengths
        cells = n_c * n_loss * n_signal * trials
        if cells > MAX_CELLS:
            raise SweepError(
                "grid",
                f"{n_c} c × {n_loss} loss × {n_signal} signal × {trials} trials "
                f"= {cells} cells, more than the sanity limit of {MAX_CELLS}",
            )
    c = schema.axis(grid["c"], "grid.c")
    for i, value_c in enumerate(c):
        if value_c <= 0:
            raise SweepError(f"grid.c[{i}]", "must be > 0")
    losses = grid["loss"]
    if not isinstance(losses, (list, tuple)):
        raise SweepError("grid.loss", f"must be a list of loss names, not {schema.type_name(losses)}")
    if not losses:
        raise SweepError("grid.loss", "must not be empty")
    for i, loss in enumerate(losses):
        if not isinstance(loss, str):
            raise SweepError(f"grid.loss[{i}]", f"must be a loss name, not {schema.type_name(loss)}")
    schema.unique(losses, "grid.loss")
    return Grid(c=c, loss=tuple(losses), signal=schema.axis(grid["signal"], "grid.signal"))


def _fixed(value: Any, target: str, signal: tuple[float, ...]) -> dict[str, Any]:
    """The fixed fields, checked against the signal target (the rest is the Scenario's job)."""
    fixed = dict(schema.mapping({} if value is None else value, "fixed", _FIXED_KEYS))
    vector, scalar = _target_parts(target)
    if isinstance(scalar, int):
        _check_covariance_target(fixed.get("cov"), target, scalar, signal)
        return fixed
    given = fixed.get(vector)
    if isinstance(given, Mapping) and scalar in given:
        reason = f"is set by the signal axis (signal: {target}); remove it"
        raise SweepError(f"fixed.{vector}.{scalar}", reason)
    if vector == "w" and given in _W_NAMES:
        reason = f"{target} needs fixed.{vector} as a mapping {{norm, angle}}, not {schema.shown(given)}"
        raise SweepError("signal", reason)
    # A value of another type is the Scenario's to refuse, at its own path.
    if scalar == "angle" and (vector not in fixed or isinstance(given, Mapping)):
        norm = given.get("norm", 0.0) if isinstance(given, Mapping) else 0.0
        if not isinstance(norm, bool) and isinstance(norm, (int, float)) and norm == 0:
            raise SweepError(
                "signal",
                f"{target} rotates a vector of norm 0, so every point would be the same: "
                f"set fixed.{vector}.norm > 0",
            )
    elif scalar != "angle":
        for i, s in enumerate(signal):
            if s < 0:
                raise SweepError(f"grid.signal[{i}]", f"must be >= 0 (it sets {target})")
    return fixed


def _check_covariance_target(cov: Any, target: str, index: int, signal: tuple[float, ...]) -> None:
    """``fixed.cov.eigenvalues`` must hold ``null`` at the index the signal sets; the signal be > 0."""
    if cov is not None and not isinstance(cov, Mapping):
        raise SweepError(
            "fixed.cov", f"must be a mapping with eigenvalues and weights, not {schema.type_name(cov)}"
        )
    eigenvalues = cov.get("eigenvalues") if cov is not None else None
    if eigenvalues is None:
        reason = f"{target} needs fixed.cov.eigenvalues, a list with null at [{index}] (the signal's place)"
        raise SweepError("signal", reason)
    if not isinstance(eigenvalues, (list, tuple)):
        reason = (
            f"must be a list with null at [{index}] (the signal's place), not {schema.type_name(eigenvalues)}"
        )
        raise SweepError("fixed.cov.eigenvalues", reason)
    if index >= len(eigenvalues):
        count = len(eigenvalues)
        reason = f"{target} is out of range: fixed.cov.eigenvalues has {count} entries, [0] to [{count - 1}]"
        raise SweepError("signal", reason)
    if eigenvalues[index] is not None:
        reason = f"is set by the signal axis (signal: {target}); write null in its place"
        raise SweepError(f"fixed.cov.eigenvalues[{index}]", reason)
    for i, s in enumerate(signal):
        if s <= 0:
            raise SweepError(f"grid.signal[{i}]", f"must be > 0 (it sets {target})")


def _montecarlo(value: Any, p: int) -> MonteCarloOptions:
    options = schema.mapping({} if value is None else value, "montecarlo", _MONTECARLO_KEYS)
    method = options.get("method", "dense")
    if method not in MONTECARLO_METHODS:
        raise SweepError(
            "montecarlo.method", f"must be one of {', '.join(MONTECARLO_METHODS)}, not {schema.shown(method)}"
        )
    k = schema.integer(options.get("k", 2), "montecarlo.k", minimum=0)
    if method == "dense":
        for key in _LANCZOS_KEYS:
            if key in options:
                raise SweepError(f"montecarlo.{key}", "applies to method: lanczos only")
        if k > p:
            raise SweepError("montecarlo.k", f"must be <= p = {p}")
        return MonteCarloOptions(k=k)
    probes = schema.integer(options.get("probes", 4), "montecarlo.probes", minimum=1)
    steps = schema.integer(options.get("steps", 80), "montecarlo.steps", minimum=1)
    if probes * steps >= p:
        reason = f"probes × steps = {probes * steps} must be < p = {p} (at this size use method: dense)"
        raise SweepError("montecarlo.steps", reason)
    if k > probes * steps:
        raise SweepError("montecarlo.k", f"must be <= probes × steps = {probes * steps}")
    dtype = options.get("dtype", "float64")
    if dtype not in DTYPES:
        raise SweepError("montecarlo.dtype", f"must be one of {', '.join(DTYPES)}, not {schema.shown(dtype)}")
    memory = schema.finite(options.get("memory_gb", 16.0), "montecarlo.memory_gb")
    if memory <= 0:
        raise SweepError("montecarlo.memory_gb", "must be > 0")
    return MonteCarloOptions(k=k, method=method, probes=probes, steps=steps, dtype=dtype, memory_gb=memory)


def _options(value: Any, path: str, minima: dict[str, int]) -> dict[str, int]:
    options = schema.mapping({} if value is None else value, path, tuple(minima))
    return {key: schema.integer(v, f"{path}.{key}", minimum=minima[key]) for key, v in options.items()}


def _check_scenarios(spec: SweepSpec) -> Scenario:
    """Build one scenario per ``(c, loss)`` at both ends of the signal axis; return the first."""
    n_c, n_loss, n_signal, _ = spec.shape
    first = _build(spec, 0, 0, 0)
    for point in product(range(n_c), range(n_loss), sorted({0, n_signal - 1})):
        if point != (0, 0, 0):
            _build(spec, *point)
    return first


def _build(spec: SweepSpec, i_c: int, i_loss: int, i_signal: int) -> Scenario:
    """``spec.scenario(...)``, with a :class:`ScenarioError` turned into a :class:`SweepError`."""
    try:
        return spec.scenario(i_c, i_loss, i_signal)
    except ScenarioError as error:
        # The Scenario quotes keys and values as given: escaped and cut short here, to one line.
        path = _one_line(_scenario_path(error.field, spec.signal_target, i_c, i_loss, i_signal))
        reason = _one_line(error.reason) + _context(spec, path, i_c, i_loss, i_signal)
        raise SweepError(path, reason) from None


def _scenario_path(field: str, target: str, i_c: int, i_loss: int, i_signal: int) -> str:
    """The YAML path of a :class:`ScenarioError`'s field at grid point ``(i_c, i_loss, i_signal)``."""
    head = re.split(r"[.\[]", field, maxsplit=1)[0]
    if field == "c":
        return f"grid.c[{i_c}]"
    if field == "loss":
        return f"grid.loss[{i_loss}]"
    if field == target:
        return f"grid.signal[{i_signal}]"
    if head in _FIXED_KEYS:
        return f"fixed.{field}"
    return field


def _context(spec: SweepSpec, path: str, i_c: int, i_loss: int, i_signal: int) -> str:
    """`` (at grid.c[1] = 3)`` for a field that was valid at an earlier grid point.

    The points are checked in order, so an error at a later ``c`` (loss, signal) than the first
    comes from the combination with that value, e.g. a label transform that needs ``c < 2``.
    """
    axes = (
        ("grid.c", i_c, spec.grid.c[i_c]),
        ("grid.loss", i_loss, spec.grid.loss[i_loss]),
        ("grid.signal", i_signal, spec.grid.signal[i_signal]),
    )
    where = [f"{axis}[{i}] = {schema.shown(v)}" for axis, i, v in axes if i > 0 and not path.startswith(axis)]
    return f" (at {', '.join(where)})" if where else ""


def _normalised(spec: SweepSpec, first: Scenario) -> SweepSpec:
    """The spec with model and fixed fields in the Scenario's normal form (defaults filled in)."""
    fields = first.to_dict()
    vector, scalar = _target_parts(spec.signal_target)
    fixed = {key: copy.deepcopy(_plain(fields[key])) for key in _FIXED_KEYS}
    if isinstance(scalar, int):
        fixed[vector]["eigenvalues"][scalar] = None
    else:
        del fixed[vector][scalar]
    return replace(spec, model=_plain(fields["model"]), fixed=fixed)


def _target_parts(target: str) -> tuple[str, str | int]:
    """``("mu", "norm")`` for ``mu.norm``; ``("cov", 1)`` for ``cov.eigenvalues[1]``."""
    match = _COV_TARGET.fullmatch(target)
    if match:
        return "cov", int(match.group(1))
    vector, scalar = target.split(".")
    return vector, scalar


def _set_signal(fixed: Mapping[str, Any], target: tuple[str, str | int], value: float) -> dict[str, Any]:
    """The fixed fields with the signal ``value`` set into ``target`` (from :func:`_target_parts`)."""
    vector, scalar = target
    fields = dict(fixed)
    given = fields.get(vector, {})
    if not isinstance(given, Mapping):
        return fields
    if isinstance(scalar, int):
        eigenvalues = list(given["eigenvalues"])
        eigenvalues[scalar] = value
        fields[vector] = {**given, "eigenvalues": eigenvalues}
    else:
        fields[vector] = {**given, scalar: value}
    return fields


# ----------------------------------------------------------------------------------------------
# Small checks
# ----------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """``text`` with unprintable characters escaped (a message is one line), cut short."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _SHOWN_REASON else text[: _SHOWN_REASON - 1] + "…"


def _check_huge_integers(value: Any, path: str, seen: set[int] | None = None) -> None:
    """Refuse an integer too large for a float anywhere in ``value`` (Scenario reads numbers as floats).

    Aliases make ``value`` a graph that may share parts: ``seen`` walks each container once.
    """
    seen = set() if seen is None else seen
    if isinstance(value, int) and not isinstance(value, bool) and not schema.fits_float(value):
        raise SweepError(path, "must be finite")
    if isinstance(value, (Mapping, list, tuple)) and id(value) not in seen:
        seen.add(id(value))
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            child = schema.join(path, key) if isinstance(value, Mapping) else f"{path}[{key}]"
            _check_huge_integers(item, child, seen)


def _check_index(index: int, size: int, name: str) -> None:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < size:
        raise IndexError(f"{name} must be an integer in [0, {size}), not {index!r}")


def _plain(value: Any) -> Any:
    """Plain ``dict``/``list``/scalar copy of normalised scenario data (for YAML and JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
