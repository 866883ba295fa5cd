"""Hostile sweep files: whatever a file holds, it is a sweep or a ``SweepError`` naming its YAML path.

Property-based (hypothesis, derandomized and without an example database, so a run is the same
everywhere): one field of a valid sweep at a time gets a wrong type, a bad, huge or non-finite
value, or an unknown key; arbitrary text and bytes; tags that would construct objects, alias bombs
and deep nests; and the command line on a sample of such files (exit 2, one line on stderr,
nothing written).  Any exception other than ``SweepError`` fails a test.
"""

from __future__ import annotations

import codecs
import copy
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import cli
from pipeline.errors import SweepError
from pipeline.sweep import MAX_CELLS, MAX_P, SweepSpec, load_sweep, parse_sweep

# Reproducible everywhere: the same examples on every run, none replayed from a local database.
# The example counts (set per property) keep the whole file near 30 s on a loaded 2-core machine.
PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# A refusal is a check of a few fields: 1 s is far above it on any machine, and far below what
# expanding an alias bomb, parsing a huge file or starting a cluster would take.
FAST_SECONDS = 1.0

# A valid sweep (the quick start's shape, small); every property changes one thing in it.
BASE: dict[str, Any] = {
    "name": "hostile",
    "p": 40,
    "trials": 2,
    "seed": 3,
    "model": "logistic",
    "grid": {
        "c": [0.5, 1.0],
        "loss": ["logistic", "exponential"],
        "signal": {"start": 0.0, "stop": 2.0, "num": 3},
    },
    "signal": "mu.norm",
    "fixed": {
        "w_star": {"norm": 1.0},
        "w": "w_star",
        "mu": {"angle": 90},
        "cov": {"eigenvalues": [1], "weights": [1]},
    },
    "montecarlo": {"k": 2},
    "theory": {"points": 64},
}
# The same with the lanczos method, whose options the dense method refuses.
LANCZOS: dict[str, Any] = {
    **BASE,
    "montecarlo": {
        "k": 2,
        "method": "lanczos",
        "probes": 2,
        "steps": 8,
        "dtype": "float32",
        "memory_gb": 1.0,
    },
}
BASES = {"dense": BASE, "lanczos": LANCZOS}
P = BASE["p"]
CELLS_PER_TRIAL = 2 * 2 * 3  # c × loss × signal of BASE
MIN_THEORY_POINTS, MAX_THEORY_POINTS = 32, 100_000
MAX_SAMPLES = 10**9  # most n = round(p / c)
# Covariance weights must sum to 1 within this (pipeline.scenario: float rounding of fractions).
WEIGHT_SUM_TOLERANCE = 1e-9

Path_ = tuple[str | int, ...]


def dotted(path: Path_) -> str:
    """``("grid", "c", 1)`` ⇒ ``"grid.c[1]"``; ``()`` ⇒ ``"<root>"``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<root>"


def nodes(data: Any, path: Path_ = ()) -> Iterator[Path_]:
    """Every path in ``data``, parents before children."""
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from nodes(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from nodes(value, (*path, i))


def changed(path: Path_, value: Any, base: dict[str, Any] = BASE) -> dict[str, Any]:
    """``base`` with the value at ``path`` set (a new key where there is none)."""
    data = copy.deepcopy(base)
    *parents, last = path
    holder: Any = data
    for part in parents:
        holder = holder[part]
    holder[last] = value
    return data


def removed(path: Path_) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    *parents, last = path
    holder: Any = data
    for part in parents:
        holder = holder[part]
    del holder[last]
    return data


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def outcome(text: str) -> SweepSpec | SweepError:
    """The spec, or the SweepError; any other exception propagates and fails the test."""
    try:
        return parse_sweep(text)
    except SweepError as error:
        return error


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """The result of ``call()`` or its SweepError, and the seconds it took."""
    start = time.perf_counter()
    try:
        result = call()
    except SweepError as error:
        result = error
    return result, time.perf_counter() - start


def one_line(error: SweepError) -> None:
    message = str(error)
    assert message.isprintable(), message  # no newline or other control character
    assert message == f"{error.path}: {error.reason}"


def within(path: str, field: str) -> bool:
    """``path`` is ``field`` or one of its descendants."""
    return path == field or path.startswith((f"{field}.", f"{field}["))


# ----------------------------------------------------------------------------------------------
# The schema, as the tests know it: which types each field takes
# ----------------------------------------------------------------------------------------------

INT, NUMBER, STR, LIST, MAPPING, NULL = "int", "number", "str", "list", "mapping", "null"
ACCEPTS: dict[str, set[str]] = {
    "name": {STR},
    "p": {INT},
    "trials": {INT},
    "seed": {INT},
    "model": {STR, MAPPING},
    "grid": {MAPPING},
    "grid.c": {LIST, MAPPING},
    "grid.c[0]": {NUMBER},
    "grid.c[1]": {NUMBER},
    "grid.loss": {LIST},
    "grid.loss[0]": {STR},
    "grid.loss[1]": {STR},
    "grid.signal": {LIST, MAPPING},
    "grid.signal.start": {NUMBER},
    "grid.signal.stop": {NUMBER},
    "grid.signal.num": {INT},
    "signal": {STR},
    "fixed": {MAPPING, NULL},
    "fixed.w_star": {MAPPING},
    "fixed.w_star.norm": {NUMBER},
    "fixed.w": {STR, MAPPING},
    "fixed.mu": {MAPPING},
    "fixed.mu.angle": {NUMBER},
    "fixed.cov": {MAPPING},
    "fixed.cov.eigenvalues": {LIST},
    "fixed.cov.eigenvalues[0]": {NUMBER},
    "fixed.cov.weights": {LIST},
    "fixed.cov.weights[0]": {NUMBER},
    "montecarlo": {MAPPING, NULL},
    "montecarlo.k": {INT},
    "montecarlo.method": {STR},
    "montecarlo.probes": {INT},
    "montecarlo.steps": {INT},
    "montecarlo.dtype": {STR},
    "montecarlo.memory_gb": {NUMBER},
    "theory": {MAPPING, NULL},
    "theory.points": {INT},
}
FIELDS = [path for path in nodes(BASE) if path]
# Every field of both bases, with the base it is changed in: (base name, path).
CASES = [("dense", path) for path in FIELDS]
CASES += [("lanczos", path) for path in nodes(LANCZOS) if path[:1] == ("montecarlo",) and len(path) > 1]


def test_the_schema_table_covers_every_field() -> None:
    assert {dotted(path) for _, path in CASES} == set(ACCEPTS)
    for base in BASES.values():
        assert isinstance(parse_sweep(dump(base)), SweepSpec)


# Values of each type, hostile ones included.  Floats cover NaN, ±inf, -0.0 and the subnormals;
# integers reach past float range (10⁴⁰⁰) and past the sanity limits.
SPECIAL_INTS = [0, -1, 1, 2, 31, 32, P, P + 1, MAX_P, MAX_P + 1, MAX_CELLS, MAX_CELLS + 1]
SPECIAL_INTS += [10**9, 10**12, 2**63, 10**400, -(10**400)]
INTS = st.one_of(st.integers(-100, 100), st.sampled_from(SPECIAL_INTS), st.integers())
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e-300, 1e-9, 1.0, 1e308, -1e308]
FLOATS = st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats())
# No surrogates: yaml.safe_dump cannot write them (the raw-text property below sends them).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT)
VALUES_OF: dict[str, st.SearchStrategy[Any]] = {
    INT: INTS,
    NUMBER: st.one_of(INTS, FLOATS),
    STR: TEXT,
    LIST: st.lists(SCALARS, max_size=3),
    MAPPING: st.dictionaries(TEXT, SCALARS, max_size=3),
    NULL: st.none(),
}


def wrong_values(accepts: set[str]) -> st.SearchStrategy[Any]:
    """Values of no type the field takes; ``bool`` is never a number here, though Python's is an int."""
    strategies: list[st.SearchStrategy[Any]] = [st.booleans()]
    if not accepts & {INT, NUMBER}:
        strategies.append(INTS)
    if NUMBER not in accepts:
        strategies.append(FLOATS)  # 40.0 included: an integer field takes no float
    strategies += [VALUES_OF[kind] for kind in (STR, LIST, MAPPING, NULL) if kind not in accepts]
    return st.one_of(*strategies)


@st.composite
def wrong_type(draw: st.DrawFn) -> tuple[str, Path_, Any]:
    base, path = draw(st.sampled_from(CASES))
    return base, path, draw(wrong_values(ACCEPTS[dotted(path)]))


@PROPERTY
@given(wrong_type())
def test_a_value_of_a_wrong_type_is_refused_at_its_path(change: tuple[str, Path_, Any]) -> None:
    base, path, value = change
    result = outcome(dump(changed(path, value, BASES[base])))
    # A mapping may be refused at one of its keys (unknown key), a list at one of its items.
    assert isinstance(result, SweepError), f"{dotted(path)} = {value!r} was accepted"
    assert within(result.path, dotted(path)), (dotted(path), value, str(result))
    one_line(result)


# Any YAML data at all: scalars, lists and mappings nested a few levels.
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(TEXT, INTS, st.booleans(), st.none()), inner, max_size=4),
    ),
    max_leaves=20,
)


@settings(PROPERTY, max_examples=200)
@given(st.sampled_from(CASES), DOCUMENTS)
def test_any_data_in_any_field_is_a_sweep_or_a_sweep_error(case: tuple[str, Path_], value: Any) -> None:
    # No oracle for the path: a valid value of one field can clash with another (a model whose
    # labels a loss of the grid cannot take is named at the loss).  Only never another exception.
    base, path = case
    result = outcome(dump(changed(path, value, BASES[base])))
    if isinstance(result, SweepError):
        one_line(result)


# ----------------------------------------------------------------------------------------------
# Values of the right type: negative, zero, huge, NaN, ±inf
# ----------------------------------------------------------------------------------------------


def fits_float(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def signal_values(start: float, stop: float) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.linspace(start, stop, BASE["grid"]["signal"]["num"])


# For each numeric field, where a value must be refused (None: it is valid).  Written from the
# schema in shared/DESIGN.md and the docstrings, independently of pipeline.sweep's code.
def expected_refusal(base: str, field: str, value: int | float) -> Callable[[str], bool] | None:
    exactly: Callable[[str], bool] = lambda path: path == field  # noqa: E731
    krylov = LANCZOS["montecarlo"]["probes"] * LANCZOS["montecarlo"]["steps"]
    if field == "p":
        return None if 2 <= value <= MAX_P else exactly
    if field == "trials":
        if value < 1:
            return exactly
        return None if CELLS_PER_TRIAL * value <= MAX_CELLS else (lambda path: path == "grid")
    if field == "seed":
        return None if value >= 0 else exactly
    if field in ("grid.c[0]", "grid.c[1]"):
        other = BASE["grid"]["c"][1 - int(field[-2])]
        if not fits_float(value) or value <= 0 or P / value > MAX_SAMPLES or round(P / value) < 1:
            return exactly
        # A duplicate is named at the later of the two.
        return (lambda path: path == "grid.c[1]") if value == other else None
    if field in ("grid.signal.start", "grid.signal.stop"):
        if not fits_float(value):
            return exactly
        ends = {**BASE["grid"]["signal"], field.rsplit(".", 1)[1]: float(value)}
        values = signal_values(ends["start"], ends["stop"])
        valid = np.isfinite(values).all() and (values >= 0).all() and len(set(values)) == len(values)
        return None if valid else (lambda path: within(path, "grid.signal"))
    if field == "grid.signal.num":
        if value < 1 or value > MAX_CELLS:
            return exactly
        return None if 2 * 2 * value * BASE["trials"] <= MAX_CELLS else (lambda path: path == "grid")
    if field == "fixed.w_star.norm":
        return None if fits_float(value) and value >= 0 else exactly
    if field == "fixed.mu.angle":
        return None if fits_float(value) else exactly
    if field == "fixed.cov.eigenvalues[0]":
        return None if fits_float(value) and value > 0 else exactly
    if field == "fixed.cov.weights[0]":
        if not fits_float(value) or value <= 0:
            return exactly
        sums_to_one = abs(float(value) - 1.0) <= WEIGHT_SUM_TOLERANCE
        return None if sums_to_one else (lambda path: path == "fixed.cov.weights")
    if field == "montecarlo.k":
        return None if 0 <= value <= (P if base == "dense" else krylov) else exactly
    if field in ("montecarlo.probes", "montecarlo.steps"):
        # probes × steps < p, and k = 2 <= probes × steps
        other = LANCZOS["montecarlo"]["steps" if field.endswith("probes") else "probes"]
        if value < 1:
            return exactly
        return None if value * other < P else (lambda path: path == "montecarlo.steps")
    if field == "montecarlo.memory_gb":
        return None if fits_float(value) and value > 0 else exactly
    if field == "theory.points":
        return None if MIN_THEORY_POINTS <= value <= MAX_THEORY_POINTS else exactly
    raise AssertionError(f"no oracle for {field}")


NUMERIC = [(base, path) for base, path in CASES if ACCEPTS[dotted(path)] & {INT, NUMBER}]


@st.composite
def bad_number(draw: st.DrawFn) -> tuple[str, Path_, int | float]:
    base, path = draw(st.sampled_from(NUMERIC))
    return base, path, draw(INTS if ACCEPTS[dotted(path)] == {INT} else VALUES_OF[NUMBER])


@settings(PROPERTY, max_examples=400)
@given(bad_number())
def test_a_number_is_refused_at_its_path_unless_valid(change: tuple[str, Path_, int | float]) -> None:
    base, path, value = change
    refusal = expected_refusal(base, dotted(path), value)
    text = dump(changed(path, value, BASES[base]))
    result, seconds = timed(lambda: parse_sweep(text))
    if refusal is None:
        assert isinstance(result, SweepSpec), f"{dotted(path)} = {value!r}: {result}"
    else:
        assert isinstance(result, SweepError), f"{dotted(path)} = {value!r} was accepted"
        assert refusal(result.path), (dotted(path), value, str(result))
        one_line(result)
        # The sanity limits are checked before anything of their size is made: p = 10⁴⁰⁰ or
        # num = 10¹² are refused as fast as p = 1.
        assert seconds < FAST_SECONDS, (dotted(path), value)


# ----------------------------------------------------------------------------------------------
# Unknown keys, at every depth
# ----------------------------------------------------------------------------------------------

KNOWN_KEYS: dict[Path_, set[str]] = {
    (): {"name", "p", "trials", "seed", "model", "grid", "signal", "fixed", "montecarlo", "theory"},
    ("grid",): {"c", "loss", "signal"},
    ("grid", "signal"): {"start", "stop", "num", "scale"},
    ("fixed",): {"mu", "w_star", "w", "cov", "labels"},
    ("fixed", "w_star"): {"norm", "spread"},
    ("fixed", "mu"): {"norm", "angle", "spread"},
    ("fixed", "cov"): {"eigenvalues", "weights"},
    ("montecarlo",): {"k", "method", "probes", "steps", "dtype", "memory_gb"},
    ("theory",): {"points"},
}
KEYS = st.one_of(TEXT, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))


@st.composite
def unknown_key(draw: st.DrawFn) -> tuple[Path_, Any, Any]:
    mapping = draw(st.sampled_from(sorted(KNOWN_KEYS)))
    key = draw(KEYS.filter(lambda k: k not in KNOWN_KEYS[mapping]))
    return mapping, key, draw(SCALARS)


@settings(PROPERTY, max_examples=150)
@given(unknown_key())
def test_an_unknown_key_is_refused_at_its_path(change: tuple[Path_, Any, Any]) -> None:
    mapping, key, value = change
    result = outcome(dump(changed((*mapping, key), value)))
    assert isinstance(result, SweepError), f"{dotted(mapping)}: {key!r} was accepted"
    assert result.reason.startswith("unknown key (known: "), str(result)
    if isinstance(key, str) and key.isprintable() and len(key) <= 12:
        assert result.path == (key if mapping == () else f"{dotted(mapping)}.{key}")
    else:  # quoted, escaped to one line
        assert mapping == () or result.path.startswith(f"{dotted(mapping)}.")
    one_line(result)


# ----------------------------------------------------------------------------------------------
# Missing fields and empty lists: every case, not a sample
# ----------------------------------------------------------------------------------------------

REQUIRED = {"name", "p", "grid", "grid.c", "grid.loss", "grid.signal", "grid.signal.start"}
REQUIRED |= {"grid.signal.stop", "grid.signal.num"}
# Removing these leaves a list or mapping the Scenario refuses, named at the path given.
REMOVAL_REFUSED_AT = {
    "fixed.cov.eigenvalues": "fixed.cov.eigenvalues",
    "fixed.cov.eigenvalues[0]": "fixed.cov.eigenvalues",
    "fixed.cov.weights[0]": "fixed.cov.weights",
}


@pytest.mark.parametrize("path", FIELDS, ids=dotted)
def test_a_missing_field_is_refused_at_its_path_or_defaults(path: Path_) -> None:
    result = outcome(dump(removed(path)))
    field = dotted(path)
    if field in REQUIRED:
        assert isinstance(result, SweepError)
        assert (result.path, result.reason) == (field, "is required")
    elif field in REMOVAL_REFUSED_AT:
        assert isinstance(result, SweepError)
        assert result.path == REMOVAL_REFUSED_AT[field]
    else:
        assert isinstance(result, SweepSpec), f"without {field}: {result}"


@pytest.mark.parametrize(
    "field", ["grid.c", "grid.loss", "grid.signal", "fixed.cov.eigenvalues", "fixed.cov.weights"]
)
@pytest.mark.parametrize("empty", [[], {}], ids=["list", "mapping"])
def test_an_empty_axis_or_list_is_refused_at_its_path(field: str, empty: Any) -> None:
    path = next(p for p in FIELDS if dotted(p) == field)
    result = outcome(dump(changed(path, empty)))
    assert isinstance(result, SweepError)
    # An empty mapping in place of {start, stop, num} lacks its first key.
    assert result.path in (field, f"{field}.start"), str(result)


# ----------------------------------------------------------------------------------------------
# Huge grids: refused before anything of their size is made
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "refused_at"),
    [
        (("grid", "signal", "num"), 10**9, "grid.signal.num"),
        (("grid", "signal", "num"), 10**400, "grid.signal.num"),
        (("p",), 10**12, "p"),
        (("trials",), 10**12, "grid"),
        (("theory", "points"), 10**12, "theory.points"),
        (("grid", "c"), {"start": 1e-9, "stop": 1, "num": 10**12}, "grid.c.num"),
        (("grid", "c", 0), 1e-300, "grid.c[0]"),  # n = round(p/c) = 4e301 samples
        (("grid", "c", 0), 5e-324, "grid.c[0]"),  # p / c overflows to inf
        (("grid", "signal"), {"start": -1e308, "stop": 1e308, "num": 3}, "grid.signal"),
        (("name",), "a" * 10_000, "name"),  # it names the store: a file name has 255 bytes at most
    ],
)
def test_a_huge_value_is_refused_fast(path: Path_, value: Any, refused_at: str) -> None:
    result, seconds = timed(lambda: parse_sweep(dump(changed(path, value))))
    assert isinstance(result, SweepError)
    assert result.path == refused_at, str(result)
    assert seconds < FAST_SECONDS


@pytest.mark.parametrize(
    ("path", "value", "refused_at"),
    [
        # 10⁶ valid values: 10⁶ c × 2 losses × 3 signals × 2 trials cells, counted before reading one.
        (("grid", "c"), [0.5 + i * 1e-7 for i in range(10**6)], "grid"),
        (("grid", "signal"), [float(i) for i in range(MAX_CELLS + 1)], "grid.signal"),
        (("grid", "loss"), ["logistic"] * (MAX_CELLS + 1), "grid.loss"),
    ],
    ids=["c", "signal", "loss"],
)
def test_a_huge_list_is_refused_unread(path: Path_, value: list[Any], refused_at: str) -> None:
    # As Python data (SweepSpec.from_dict validates the parsed document): as YAML text a list
    # this long is refused for its size before it is parsed (below).
    result, seconds = timed(lambda: SweepSpec.from_dict(changed(path, value)))
    assert isinstance(result, SweepError)
    assert within(result.path, refused_at), str(result)  # the loss list: at its first duplicate
    assert seconds < FAST_SECONDS


def test_a_huge_list_in_a_file_is_refused_unparsed() -> None:
    values = ", ".join(f"{0.5 + i * 1e-7:.7f}" for i in range(100_000))
    text = f"name: x\np: 40\ngrid: {{c: [{values}], loss: [square], signal: [0.0]}}\n"
    result, seconds = timed(lambda: parse_sweep(text))
    assert isinstance(result, SweepError)
    assert result.path == "<root>"
    assert result.reason.startswith("more than 262144 characters (a sanity limit")
    assert seconds < FAST_SECONDS


def test_a_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.write(dump(BASE).encode())
        file.truncate(10**10)  # sparse: 10 GB that take no disk
    result, seconds = timed(lambda: load_sweep(path))
    assert isinstance(result, SweepError)
    assert (result.path, result.source) == ("<root>", str(path))
    assert result.reason.startswith("more than 262144 bytes")
    assert seconds < FAST_SECONDS


# ----------------------------------------------------------------------------------------------
# Arbitrary text and bytes
# ----------------------------------------------------------------------------------------------


@settings(PROPERTY, max_examples=300)
@given(st.text())
def test_any_text_is_a_sweep_or_a_sweep_error(text: str) -> None:
    result = outcome(text)
    if isinstance(result, SweepError):
        one_line(result)


BASE_TEXT = dump(BASE)
# Characters that mean something to YAML, and a few that do not.
EDIT = st.text(
    st.sampled_from(list("[]{}:,-?!&*'\"#|>%@`\n\t \\.0123456789eE+_<=aZ\x00\x85\u2028\ufeff")), max_size=4
)


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, len(BASE_TEXT)), st.integers(0, 3), EDIT), min_size=1, max_size=4))
def test_an_edited_sweep_is_a_sweep_or_a_sweep_error(edits: list[tuple[int, int, str]]) -> None:
    text = BASE_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    result = outcome(text)
    if isinstance(result, SweepError):
        one_line(result)


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bytes") / "sweep.yaml"


@PROPERTY
@given(
    st.one_of(
        st.binary(max_size=200),
        st.tuples(st.binary(max_size=40), st.binary(max_size=40)).map(
            lambda ends: ends[0] + BASE_TEXT.encode() + ends[1]
        ),
    )
)
def test_any_bytes_are_a_sweep_or_a_sweep_error(sweep_file: Path, raw: bytes) -> None:
    sweep_file.write_bytes(raw)
    try:
        result: SweepSpec | SweepError = load_sweep(sweep_file)
    except SweepError as error:
        result = error
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        raw[skip:].decode("utf-8")
    except UnicodeDecodeError as decoding:
        offset = skip + decoding.start
        assert isinstance(result, SweepError)
        assert (result.path, result.source) == ("<root>", str(sweep_file))
        assert result.reason == (
            f"not UTF-8 text: byte 0x{raw[offset]:02x} at offset {offset} cannot be decoded"
        )
    if isinstance(result, SweepError):
        assert result.source == str(sweep_file)
        one_line(result)


def test_a_bad_byte_after_a_byte_order_mark_is_named_at_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(codecs.BOM_UTF8 + b"name: caf\xe9\n")
    with pytest.raises(SweepError, match=r"^<root>: not UTF-8 text: byte 0xe9 at offset 12 cannot"):
        load_sweep(path)


# ----------------------------------------------------------------------------------------------
# Tags that construct objects, alias bombs, deep nests
# ----------------------------------------------------------------------------------------------


def payloads(marker: Path) -> list[str]:
    """YAML that, read by an unsafe loader, would run code (creating ``marker``) or build objects."""
    return [
        f'!!python/object/apply:os.system ["touch {marker}"]',
        f"!!python/object/apply:subprocess.check_call [[touch, {marker}]]",
        f"!!python/object/apply:builtins.exec [\"open('{marker}', 'w').close()\"]",
        f"!!python/object/new:pathlib.Path ['{marker}']",
        "!!python/object:collections.OrderedDict {}",
        "!!python/name:os.system ''",  # the empty scalar ends the tag: a URI may hold ']' and ','
        "!!python/module:os ''",
        "!!python/tuple [1, 2]",
        "!!python/complex 1+2j",
        "!custom 1",
        "!<tag:example.com,2000:app/thing> {a: 1}",
        "!!foo [x]",
    ]


PLACEHOLDER = "PAYLOAD_HERE"


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tags") / "code-ran"


@settings(PROPERTY, max_examples=120)
@given(st.sampled_from(FIELDS), st.integers(0, len(payloads(Path("x"))) - 1))
def test_a_tag_that_constructs_objects_is_refused_and_runs_nothing(
    marker: Path, path: Path_, which: int
) -> None:
    text = yaml.safe_dump(changed(path, PLACEHOLDER), sort_keys=False, default_flow_style=None)
    assert text.count(PLACEHOLDER) == 1
    result = outcome(text.replace(PLACEHOLDER, payloads(marker)[which]))
    assert isinstance(result, SweepError)
    assert result.path == dotted(path), str(result)
    assert result.reason.startswith("YAML tag ") and "is not allowed" in result.reason
    assert not marker.exists()


def test_a_tag_on_a_key_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    text = dump(BASE).replace("fixed:\n", f"fixed:\n  ? {payloads(marker)[0]}\n  : 1\n")
    result = outcome(text)
    assert isinstance(result, SweepError)
    assert result.path == "fixed" and result.reason.startswith("YAML tag ")
    assert not marker.exists()


def billion_laughs(levels: int = 9, width: int = 9) -> list[str]:
    """The anchors of the classic bomb, one per line: ``l8`` expands to ``width ** 9`` strings."""
    lines = [f"&l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"&l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return lines


@pytest.mark.parametrize(
    ("text", "field"),
    [
        # at the top, as in the classic: refused at the first anchor past the limit, l0 to l8
        ("".join(f"l{i}: {line}\n" for i, line in enumerate(billion_laughs())) + "name: x\n", "l"),
        # inside a field the schema knows, used by another
        (
            dump({k: v for k, v in BASE.items() if k != "fixed"})
            + f"fixed:\n  labels: [{', '.join(billion_laughs())}]\n  mu: *l8\n",
            "fixed.labels",
        ),
        # as the signal target
        (dump(BASE).replace("signal: mu.norm", f"signal: [{', '.join(billion_laughs())}]"), "signal"),
    ],
    ids=["top", "fixed", "signal"],
)
def test_an_alias_bomb_is_refused_without_expanding(text: str, field: str) -> None:
    result, seconds = timed(lambda: parse_sweep(text))
    assert isinstance(result, SweepError)
    assert within(result.path, field) or (field == "l" and result.path in {f"l{i}" for i in range(9)})
    assert "through YAML aliases" in result.reason
    assert seconds < FAST_SECONDS
    one_line(result)


def nest(depth: int, style: str, indent: int = 0) -> str:
    """``depth`` nested collections; a block nest starts below a line indented by ``indent``."""
    if style == "flow-list":
        return "[" * depth + "1" + "]" * depth
    if style == "flow-map":
        return "{a: " * depth + "1" + "}" * depth
    if style == "block":
        return "".join(f"\n{' ' * (indent + 2 * (i + 1))}a:" for i in range(depth)) + " 1"
    raise ValueError(style)


# Up to 40 000 levels: a flow nest that deep is 200 kB, within the size limit.  A block nest's
# indentation grows as depth², so at most 60 levels of it fit.
@pytest.mark.parametrize("depth", [33, 1000, 40_000])
@pytest.mark.parametrize("style", ["flow-list", "flow-map", "block"])
@pytest.mark.parametrize("field", [("name",), ("fixed", "mu", "angle"), ("grid", "c", 1)], ids=dotted)
def test_a_deep_nest_is_refused_at_its_path(depth: int, style: str, field: Path_) -> None:
    text = yaml.safe_dump(changed(field, PLACEHOLDER), sort_keys=False)
    line = next(line for line in text.splitlines() if PLACEHOLDER in line)
    indent = len(line) - len(line.lstrip(" -"))
    if style == "block":
        depth = min(depth, 60)
    hostile = text.replace(PLACEHOLDER, nest(depth, style, indent))
    result, seconds = timed(lambda: parse_sweep(hostile))
    assert isinstance(result, SweepError)
    # The node at the depth limit, or (found by the scanner, which reads ahead of the composer)
    # the field holding the nest or the list holding that, with the line and column.
    assert within(result.path, dotted(field)) or result.path == dotted(field[:-1]), str(result)[:200]
    assert result.reason.startswith("nested deeper than 32 levels")
    assert seconds < FAST_SECONDS


def test_a_deep_nest_through_aliases_is_refused() -> None:
    chain = ", ".join(["&a0 [1]", *(f"&a{i} [*a{i - 1}]" for i in range(1, 100))])
    text = dump(BASE).replace("seed: 3", f"seed: [{chain}]")
    result = outcome(text)
    assert isinstance(result, SweepError)
    assert within(result.path, "seed") and "through YAML aliases" in result.reason, str(result)


@pytest.mark.parametrize(
    ("scalar", "kind"),
    [
        ("2001-13-45", "timestamp"),  # resolved as a date, not one
        ("2001-12-14t21:59:43.10-99:00", "timestamp"),
        ("!!timestamp yesterday", "timestamp"),
        ("!!bool maybe", "bool"),
        ("!!int twelve", "int"),
        ("!!float 1.5.2", "float"),
        ("1" * 5000, "int"),  # Python reads at most 4300 digits
    ],
)
def test_a_scalar_its_tag_cannot_read_is_refused_at_its_path(scalar: str, kind: str) -> None:
    result = outcome(dump(BASE).replace("seed: 3", f"seed: {scalar}"))
    assert isinstance(result, SweepError)
    assert result.path == "seed"
    assert result.reason.startswith(f"must be a valid YAML {kind}, not ")
    one_line(result)


# ----------------------------------------------------------------------------------------------
# The command line: exit code 2, one line on stderr, nothing written, no cluster started
# ----------------------------------------------------------------------------------------------

HOSTILE_FILES: list[tuple[str, bytes, str]] = [
    ("wrong type", dump(changed(("grid", "c", 1), "one")).encode(), "grid.c[1]: "),
    ("bool for int", dump(changed(("trials",), True)).encode(), "trials: "),
    ("nan", dump(changed(("fixed", "mu", "angle"), math.nan)).encode(), "fixed.mu.angle: "),
    ("negative size", dump(changed(("p",), -4)).encode(), "p: "),
    ("huge grid", dump(changed(("grid", "signal", "num"), 10**9)).encode(), "grid.signal.num: "),
    ("unknown key", dump(changed(("fixed", "mu", "norme"), 1)).encode(), "fixed.mu.norme: "),
    ("key with newline", dump(changed(("grid", "c\nd"), 1)).encode(), "grid.'c\\nd': "),
    (
        "object tag",
        dump(BASE).replace("seed: 3", "seed: !!python/object/apply:os.getpid []").encode(),
        "seed: ",
    ),
    ("alias bomb", "".join(f"l{i}: {line}\n" for i, line in enumerate(billion_laughs())).encode(), "l"),
    ("deep nest", f"name: {nest(10_000, 'flow-list')}\n".encode(), "name: nested deeper than 32 levels"),
    ("latin-1", dump(BASE).encode() + "# café\n".encode("latin-1"), "<root>: not UTF-8 text: byte 0xe9"),
    ("not a mapping", b"- 1\n- 2\n", "<root>: must be a mapping"),
]


@pytest.mark.parametrize(
    ("content", "expected"), [case[1:] for case in HOSTILE_FILES], ids=[c[0] for c in HOSTILE_FILES]
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_the_cli_refuses_a_hostile_file_and_writes_nothing(
    command: str,
    content: bytes,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pipeline import runner  # imported before the clock starts: Dask takes seconds to import

    def no_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("run_sweep was called on an invalid sweep")

    monkeypatch.setattr(runner, "run_sweep", no_run)
    monkeypatch.chdir(tmp_path)
    Path("sweep.yaml").write_bytes(content)
    argv = (
        ["validate", "sweep.yaml"] if command == "validate" else ["run", "sweep.yaml", "--store", "out.zarr"]
    )
    start = time.perf_counter()
    code = cli.main(argv)
    seconds = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(f"hessweep: {expected}"), err[:300]
    assert err.endswith("\n") and err.count("\n") == 1, err[:300]
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]  # no store, no results/
    assert seconds < FAST_SECONDS
