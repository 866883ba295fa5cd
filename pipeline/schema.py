"""The checks a sweep file's fields go through, shared by every model family's parser.

Each function takes a value read from YAML and the *path* of its field (``grid.c[1]``,
``search.tolerance``; :data:`ROOT` for the document itself) and returns the value checked and
normalised, or raises a :class:`~pipeline.errors.SweepError` naming that path and the reason.
Values quoted in a message are cut short (:func:`shown`): a message is one line, whatever the file
holds.  :mod:`pipeline.sweep` (the GLM family and the YAML reader) and the families of
:mod:`pipeline.families` build their specs from these.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.errors import SweepError

__all__ = [
    "MAX_CELLS",
    "MAX_NAME",
    "MAX_THEORY_POINTS",
    "ROOT",
    "axis",
    "axis_length",
    "differences",
    "document",
    "finite",
    "fits_float",
    "integer",
    "join",
    "mapping",
    "name",
    "shown",
    "type_name",
    "unique",
]

#: Most points of a sweep (the size of the cube's ``done`` mask), and most values of an axis: a
#: sanity limit, not one of the method (beyond it a sweep is almost surely a typo).
MAX_CELLS = 10**6
#: Most abscissae of a theory's density grid: one solve each; 10⁵ resolves a 10⁻⁵ of the support.
MAX_THEORY_POINTS = 100_000
#: Longest sweep name: it names the store and its lock, ``<name>.zarr.lock``, a file name of at most
#: 255 bytes.
MAX_NAME = 128
#: The path of the document itself, in messages about it as a whole.
ROOT = "<root>"

_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
_AXIS_KEYS = ("start", "stop", "num", "scale")
# A differing list longer than this is summarised in `differences` instead of printed whole.
_SHOWN_VALUES = 8
# Values quoted in error messages are cut short.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlevel = 2
# Longest key written as is in a path; a longer one, or one with unprintable characters, is quoted.
_SHOWN_KEY = 60


def document(data: Any, known: tuple[str, ...]) -> Mapping[str, Any]:
    """The parsed document: a mapping whose keys are all ``known`` (an empty one is refused)."""
    if data is None:
        raise SweepError(ROOT, "must be a mapping of sweep keys, not an empty document")
    return mapping(data, ROOT, known)


def name(value: Any) -> str:
    """The sweep's ``name``: letters, digits, ``-`` and ``_``, at most :data:`MAX_NAME` of them."""
    if not isinstance(value, str):
        raise SweepError("name", f"must be a string, not {type_name(value)}")
    if not value:
        raise SweepError("name", "must not be empty")
    if not _NAME_PATTERN.fullmatch(value):
        reason = f"must hold only letters, digits, '-' and '_' (it names the store), not {shown(value)}"
        raise SweepError("name", reason)
    if len(value) > MAX_NAME:
        reason = f"must be at most {MAX_NAME} characters (it names the store), not {len(value)}"
        raise SweepError("name", reason)
    return value


def differences(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """The fields where two specs' plain data (``to_dict()``) differ, as ``"path: mine != theirs"``."""
    found: list[str] = []
    _diff(mine, theirs, ROOT, found)
    return found


def axis_length(axis: Any) -> int | None:
    """The number of values of an axis; None if ``axis`` refuses it for its form or its length."""
    length: Any = None
    if isinstance(axis, (list, tuple)):
        length = len(axis)
    elif isinstance(axis, Mapping):
        length = axis.get("num")
    if isinstance(length, int) and not isinstance(length, bool) and 1 <= length <= MAX_CELLS:
        return length
    return None


def axis(value: Any, path: str) -> tuple[float, ...]:
    """A numeric axis: a list of finite numbers, or ``{start, stop, num, scale}``."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise SweepError(path, "must not be empty")
        if len(value) > MAX_CELLS:
            raise SweepError(path, f"has more than {MAX_CELLS} values (a sanity limit)")
        values = tuple(finite(v, f"{path}[{i}]") for i, v in enumerate(value))
    elif isinstance(value, Mapping):
        axis = mapping(value, path, _AXIS_KEYS)
        for key in ("start", "stop", "num"):
            if key not in axis:
                raise SweepError(f"{path}.{key}", "is required")
        start = finite(axis["start"], f"{path}.start")
        stop = finite(axis["stop"], f"{path}.stop")
        num = integer(axis["num"], f"{path}.num", minimum=1)
        if num > MAX_CELLS:
            raise SweepError(f"{path}.num", f"must be <= {MAX_CELLS} (a sanity limit)")
        scale = axis.get("scale", "linear")
        if scale not in ("linear", "log"):
            raise SweepError(f"{path}.scale", f"must be 'linear' or 'log', not {shown(scale)}")
        if scale == "log":
            for key, bound in (("start", start), ("stop", stop)):
                if bound <= 0:
                    raise SweepError(f"{path}.{key}", "must be > 0 for scale: log")
        # stop - start overflows for ends near ±1.8e308: refused below rather than warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.linspace(start, stop, num) if scale == "linear" else np.geomspace(start, stop, num)
        if not np.isfinite(array).all():
            raise SweepError(path, f"stop - start = {stop:g} - {start:g} overflows a float")
        values = tuple(float(v) for v in array)
    else:
        raise SweepError(path, f"must be a list or {{start, stop, num, scale}}, not {type_name(value)}")
    unique(values, path)
    return values


def type_name(value: Any) -> str:
    """The YAML-facing name of a value's type: ``null``, ``str``, ``int``, ``list``, …"""
    return "null" if value is None else type(value).__name__


def shown(value: Any) -> str:
    """``repr(value)``, cut short: what a message quotes of a value from the file."""
    return _SHORT.repr(value)


def join(path: str, key: Any) -> str:
    """``path.key``; a key that is not a short printable string is quoted (``grid.'a\\nb'``)."""
    if not (isinstance(key, str) and key.isprintable() and len(key) <= _SHOWN_KEY):
        key = shown(key)
    return key if path == ROOT else f"{path}.{key}"


def mapping(value: Any, path: str, known: tuple[str, ...]) -> Mapping[str, Any]:
    """``value``, a mapping whose keys are all ``known`` (the first unknown key is named by its path)."""
    if not isinstance(value, Mapping):
        raise SweepError(path, f"must be a mapping, not {type_name(value)}")
    for key in value:
        if key not in known:
            raise SweepError(join(path, key), f"unknown key (known: {', '.join(sorted(known))})")
    return value


def integer(value: Any, path: str, *, minimum: int) -> int:
    """``value``, an integer (not a bool, not a float) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SweepError(path, f"must be an integer, not {type_name(value)}")
    if value < minimum:
        raise SweepError(path, f"must be >= {minimum}")
    return value


def finite(value: Any, path: str) -> float:
    """``value`` as a finite float; an integer too large for a float is refused as not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        reason = f"must be a number, not {type_name(value)}"
        if isinstance(value, str) and _looks_numeric(value):
            # YAML 1.1 reads 1e-3 (no dot) as text: the commonest way to get here.
            reason += f" ({shown(value)}: write exponents with a dot, e.g. 1.0e-3)"
        raise SweepError(path, reason)
    number = float(value) if isinstance(value, float) or fits_float(value) else math.inf
    if not math.isfinite(number):
        raise SweepError(path, "must be finite")
    return number


def fits_float(value: int) -> bool:
    """Whether ``float(value)`` exists (a 400-digit integer overflows)."""
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def unique(values: list[Any] | tuple[Any, ...], path: str) -> None:
    """Refuse a repeated value, naming its index and that of its first occurrence."""
    first: dict[Any, int] = {}
    for i, v in enumerate(values):
        j = first.setdefault(v, i)
        if j != i:
            raise SweepError(f"{path}[{i}]", f"duplicate of {path}[{j}] ({shown(v)})")


def _diff(mine: Any, theirs: Any, path: str, found: list[str]) -> None:
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in [*mine, *(k for k in theirs if k not in mine)]:
            _diff(mine.get(key), theirs.get(key), join(path, key), found)
    elif mine != theirs:
        found.append(f"{path}: {_show(mine, theirs)}")


def _show(mine: Any, theirs: Any) -> str:
    if isinstance(mine, list) and isinstance(theirs, list) and max(len(mine), len(theirs)) > _SHOWN_VALUES:
        if len(mine) != len(theirs):
            return f"{len(mine)} values != {len(theirs)} values"
        i = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
        return f"{len(mine)} values differ, first at [{i}]: {mine[i]!r} != {theirs[i]!r}"
    return f"{mine!r} != {theirs!r}"
