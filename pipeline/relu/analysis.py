"""What the Hessian spectra of a relu cube say about Arjevani & Field's claims, measured per ``k``.

The claims (``shared/theory/arjevani_field.md``; Arjevani & Field, NeurIPS 2020, and its sequel) at
a symmetric minimum of the shallow ReLU model with ``k`` neurons and ``d`` inputs:

(a) ``dk − d − 1`` of the ``dk`` eigenvalues stay bounded, concentrating near the constants
    ``1/4 − 1/(2π)``, ``1/4`` and ``1/4 + 1/(2π)`` (:data:`CONSTANTS`) up to ``O(k^{−1/2})``;
(b) the other ``d + 1`` grow linearly in ``k``, with slopes ``1/4`` and ``1/(2π)`` (:data:`SLOPES`);
(c) the spectra at spurious and global minima agree to ``O(k^{−1/2})``; and the spectrum has few
    distinct eigenvalues, whose multiplicities follow the isotypic decomposition of the point's
    isotropy group (:func:`type_a_multiplicities` for ``Δ(S_{k−1} × S_1)``; the global minimum's
    values in closed form, :func:`~pipeline.relu.global_minimum_spectrum`).

Everything works on *spectra by k*: an :class:`xarray.Dataset` with ``eigenvalues`` on
``(k, eig)`` (ascending, NaN after the first ``k·d``) and ``d`` on ``k``.  Either one point per
``k`` picked from a cube (:func:`representatives`) or spectra computed directly
(:func:`spectra_by_k`).  Then

* :func:`eigenvalue_counts`: per ``k``, the eigenvalues below and above :data:`THRESHOLD` against
  ``dk − d − 1`` and ``d + 1``;
* :func:`growth_fit`: the distinct growing eigenvalues followed across ``k``, each fitted linearly
  (slope ± standard error) and compared with the nearer of :data:`SLOPES`;
* :func:`bounded_approach`: the bounded eigenvalues' distance to the nearest of :data:`CONSTANTS`
  and the fitted power of its decay in ``k`` (against :data:`APPROACH_EXPONENT`);
* :func:`multiplicities`: the distinct eigenvalues (:func:`distinct_eigenvalues`) and their
  multiplicities against the analytic ones;
* :func:`global_minimum_gap`: the distance of the sorted spectrum to the global minimum's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from pipeline.families.relu import KINDS
from pipeline.relu.symmetry import global_minimum_spectrum

__all__ = [
    "ANALYTIC",
    "APPROACH_EXPONENT",
    "CLUSTER_RTOL",
    "CONSTANTS",
    "CONSTANT_NAMES",
    "SLOPES",
    "SLOPE_NAMES",
    "THRESHOLD",
    "bounded_approach",
    "distinct_eigenvalues",
    "eigenvalue_counts",
    "global_minimum_gap",
    "growth_fit",
    "multiplicities",
    "representatives",
    "spectra_by_k",
    "type_a_multiplicities",
]

_GAMMA = 1.0 / (2.0 * math.pi)
#: Names of :data:`CONSTANTS`, in the same order.
CONSTANT_NAMES = ("1/4 − 1/(2π)", "1/4", "1/4 + 1/(2π)")
#: The constants near which the bounded eigenvalues concentrate (claim (a)), ascending.
CONSTANTS = (0.25 - _GAMMA, 0.25, 0.25 + _GAMMA)
#: Names of :data:`SLOPES`, in the same order.
SLOPE_NAMES = ("1/(2π)", "1/4")
#: The slopes in ``k`` of the growing eigenvalues (the global minimum's ``λ₊``, ``μ±``; claim (b)).
SLOPES = (_GAMMA, 0.25)
#: The predicted power of the bounded eigenvalues' approach to :data:`CONSTANTS`: ``O(k^{−1/2})``.
APPROACH_EXPONENT = -0.5
#: Eigenvalues below this are "bounded", those at or above it "growing".  It lies in the gap between
#: the top constant ``1/4 + 1/(2π) ≈ 0.41`` (the bounded eigenvalues of the minima in relu_spurious
#: reach 0.394 at most, the global minimum's that constant exactly) and the smallest growing
#: eigenvalue: ``μ₋ ≈ 0.63`` at the global minimum for ``k = 4`` (0.75 at 5, then growing like
#: ``k/(2π)``), 0.87 at the type-A minimum for ``k = 6``, 1.15 at the ``S_{k-2} x S_2`` one for
#: ``k = 8``.  Below ``k = 4`` there is no such gap (``μ₋ = 0.51`` at ``k = 3``).
THRESHOLD = 0.5
#: Eigenvalues closer than this times the spectrum's ``max|λ|`` are one distinct eigenvalue.  In
#: relu_spurious (every symmetric point of its 240) the eigenvalues equal by symmetry differ by at
#: most 3.3e-13 relative (the eigensolver's ``kd·ε`` plus the symmetry the point's own error
#: breaks, ``|∇L| ≤ 1e-12``), and the closest distinct ones by 9.3e-7 (``S_{k-2} x S_2`` at
#: k = 16, the same at the fixed-space point); 1e-9 is ~3000 times the one and ~1000 times below
#: the other.
CLUSTER_RTOL = 1e-9
#: The analytic spectra that :func:`multiplicities` compares with.
ANALYTIC = ("global minimum", "S_{k-1} x S_1")


# ----------------------------------------------------------------------------------------------
# Spectra by k
# ----------------------------------------------------------------------------------------------


def representatives(
    ds: xr.Dataset,
    *,
    start: str = "flip1",
    extra: int = 0,
    kind: str = "spurious minimum",
    isotropy: str | None = None,
) -> xr.Dataset:
    """One point per ``k`` of a relu cube: its spectrum and what the cube says of it.

    Rule: among the trials at ``(k, extra, start)`` that are done and converged and whose ``kind``
    (and ``isotropy``, when given) match, the one with the lowest loss; the first such trial on a
    tie.  Points related by a symmetry (conjugates ``P_π W P_ρᵀ``) share their loss and spectrum
    to rounding, so which of them is picked does not matter; without ``isotropy`` the rule picks
    the deepest of the matching critical points.  A ``k`` with no matching trial is left out.

    Parameters
    ----------
    ds : xarray.Dataset
        A relu cube (:func:`pipeline.open_cube`).
    start : str, default "flip1"
        A value of the cube's ``start`` axis.
    extra : int, default 0
        A value of the cube's ``extra`` axis (``d − k``).
    kind : str, default "spurious minimum"
        ``"global minimum"``, ``"spurious minimum"`` or ``"saddle"``.
    isotropy : str, optional
        An isotropy name as stored, e.g. ``"S_{k-1} x S_1"``; any by default.

    Returns
    -------
    xarray.Dataset
        On ``k`` (the matched values, ascending): ``eigenvalues`` (``k``, ``eig``; ``eig`` cut to
        the largest ``k·d``), ``d``, ``trial``, ``loss``, ``gradient_norm``, ``isotropy`` and
        ``matches`` (how many trials matched); the selection in ``attrs`` (``start``, ``extra``,
        ``kind``).

    Raises
    ------
    ValueError
        Naming ``start``, ``extra`` or ``kind`` when the value is not in the cube or no point of
        any ``k`` matches.
    """
    for name, value in (("start", start), ("extra", extra)):
        labels = np.asarray(ds[name].values).tolist()
        if value not in labels:
            shown = ", ".join(str(label) for label in labels)
            raise ValueError(f"{name}: {value!r} is not a value of the cube ({name}: {shown})")
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}, not {kind!r}")
    wanted = ["done", "converged", "kind", "isotropy", "loss", "gradient_norm", "eigenvalues"]
    cell = ds[wanted].sel(start=start, extra=extra).load()
    match = cell["done"] & cell["converged"] & (cell["kind"] == kind)
    if isotropy is not None:
        match = match & (cell["isotropy"] == isotropy)
    ks: list[int] = []
    picked: list[int] = []
    matches: list[int] = []
    for k in cell["k"].values:
        trials = np.flatnonzero(match.sel(k=k).values)
        if trials.size:
            losses = cell["loss"].sel(k=k).values[trials]
            ks.append(int(k))
            picked.append(int(trials[np.argmin(losses)]))
            matches.append(int(trials.size))
    if not ks:
        group = "" if isotropy is None else f" of isotropy {isotropy!r}"
        reason = f"no done, converged {kind!r} point{group} at start {start!r}, extra {extra}"
        raise ValueError(f"kind: {reason}")
    d = np.array(ks, dtype=np.int64) + int(extra)
    # The selection is in attrs; the scalar coordinates it leaves would not mean the same in spectra_by_k.
    points = cell.sel(k=ks).isel(trial=xr.DataArray(picked, dims="k")).drop_vars(["start", "extra"])
    size = int((np.array(ks) * d).max())
    return xr.Dataset(
        {
            "eigenvalues": points["eigenvalues"].isel(eig=slice(0, size)).drop_vars("trial"),
            "d": ("k", d),
            "trial": ("k", np.array(picked, dtype=np.int64)),
            "matches": ("k", np.array(matches, dtype=np.int64)),
            "loss": points["loss"].drop_vars("trial"),
            "gradient_norm": points["gradient_norm"].drop_vars("trial"),
            "isotropy": points["isotropy"].drop_vars("trial"),
        },
        attrs={"start": start, "extra": int(extra), "kind": kind},
    )


def spectra_by_k(spectra: Mapping[int, ArrayLike], *, extra: int = 0) -> xr.Dataset:
    """Spectra computed directly, one per ``k``, laid out as :func:`representatives` lays them.

    Parameters
    ----------
    spectra : mapping of int to array_like
        ``k`` → the ``k·d`` Hessian eigenvalues (any order), ``d = k + extra``.
    extra : int, default 0
        ``d − k``, the same for every ``k``.

    Returns
    -------
    xarray.Dataset
        ``eigenvalues`` on ``(k, eig)`` (ascending, NaN-padded) and ``d`` on ``k``.

    Raises
    ------
    ValueError
        Naming ``spectra[k]`` (not ``k·d`` finite numbers, ``k < 1``) or ``extra``.

    Examples
    --------
    >>> from pipeline.relu import global_minimum_spectrum
    >>> ds = spectra_by_k({k: global_minimum_spectrum(k) for k in (4, 5)})
    >>> ds["eigenvalues"].shape, ds["d"].values.tolist()
    ((2, 25), [4, 5])
    """
    if isinstance(extra, bool) or not isinstance(extra, int | np.integer) or extra < 0:
        raise ValueError(f"extra: must be an integer >= 0, not {extra!r}")
    if not spectra:
        raise ValueError("spectra: must hold at least one k")
    ks = sorted(spectra)
    rows = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"spectra[{k!r}]: k must be an integer >= 1")
        values = np.sort(np.asarray(spectra[k], dtype=float).ravel())
        if values.size != k * (k + extra):
            reason = f"must hold the k·d = {k * (k + extra)} eigenvalues, not {values.size}"
            raise ValueError(f"spectra[{k}]: {reason}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"spectra[{k}]: has values that are not finite")
        rows.append(values)
    size = max(row.size for row in rows)
    padded = np.full((len(ks), size), np.nan)
    for i, row in enumerate(rows):
        padded[i, : row.size] = row
    return xr.Dataset(
        {
            "eigenvalues": (("k", "eig"), padded),
            "d": ("k", np.array([k + extra for k in ks], dtype=np.int64)),
        },
        coords={"k": np.array(ks, dtype=np.int64)},
        attrs={"extra": int(extra)},
    )


def _spectra(spectra: xr.Dataset, minimum: int = 1) -> list[tuple[int, int, np.ndarray]]:
    """``(k, d, eigenvalues)`` per ``k`` of spectra by k, checked."""
    if "eigenvalues" not in spectra or "d" not in spectra or "k" not in spectra["eigenvalues"].dims:
        raise ValueError("spectra: must hold 'eigenvalues' on (k, eig) and 'd' on k (see representatives)")
    ks = [int(k) for k in spectra["k"].values]
    if len(ks) < minimum:
        raise ValueError(f"spectra: need at least {minimum} values of k, not {len(ks)}")
    out = []
    for k, d, row in zip(
        ks, spectra["d"].values, spectra["eigenvalues"].transpose("k", "eig").values, strict=True
    ):
        values = row[: k * int(d)]
        if values.size != k * int(d) or not np.all(np.isfinite(values)):
            raise ValueError(f"spectra: k = {k} does not hold k·d = {k * int(d)} finite eigenvalues")
        out.append((k, int(d), np.sort(values)))
    return out


# ----------------------------------------------------------------------------------------------
# Distinct eigenvalues
# ----------------------------------------------------------------------------------------------


def distinct_eigenvalues(values: ArrayLike, *, rtol: float = CLUSTER_RTOL) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a spectrum and their multiplicities.

    The sorted values are split wherever two neighbours differ by more than ``rtol · max|λ|``;
    each group is one distinct eigenvalue (its mean) with the group's size as its multiplicity.

    Parameters
    ----------
    values : array_like
        The eigenvalues, finite, any order.
    rtol : float, default CLUSTER_RTOL
        Relative to the largest ``|λ|``.

    Returns
    -------
    values, multiplicities : numpy.ndarray
        Ascending distinct values, and how many eigenvalues each stands for.

    Raises
    ------
    ValueError
        Naming ``values`` (empty, not finite) or ``rtol``.

    Examples
    --------
    >>> values, counts = distinct_eigenvalues([1.0, 0.5, 1.0 + 1e-12, 2.0])
    >>> values.round(6).tolist(), counts.tolist()
    ([0.5, 1.0, 2.0], [1, 2, 1])
    """
    array = np.sort(np.asarray(values, dtype=float).ravel())
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError("values: must be a non-empty array of finite numbers")
    if not (rtol >= 0.0 and math.isfinite(rtol)):
        raise ValueError(f"rtol: must be a finite number >= 0, not {rtol!r}")
    cut = np.flatnonzero(np.diff(array) > rtol * np.abs(array).max()) + 1
    groups = np.split(array, cut)
    return np.array([group.mean() for group in groups]), np.array([group.size for group in groups])


def type_a_multiplicities(k: int) -> tuple[int, ...]:
    """The multiplicities predicted at a ``Δ(S_{k−1} × S_1)`` point with ``d = k``, ascending.

    The isotypic decomposition of ``R^{k×k}`` under ``S_{k−1}`` (acting on the first ``k − 1`` rows
    and columns together): 5 copies of the trivial representation, 5 of the standard one (dimension
    ``k − 2``), one each of ``S^{(k−3,2)}`` (dimension ``(k − 1)(k − 4)/2``) and ``S^{(k−3,1,1)}``
    (``(k − 2)(k − 3)/2``).  A generic invariant Hessian has one eigenvalue per copy: at most 12
    distinct values.

    Parameters
    ----------
    k : int
        ``≥ 4`` (for ``k = 4`` the ``S^{(1,2)}`` part is empty: 11 values).

    Returns
    -------
    tuple of int
        Summing to ``k²``.

    Raises
    ------
    ValueError
        Naming ``k``.

    Examples
    --------
    >>> type_a_multiplicities(6)
    (1, 1, 1, 1, 1, 4, 4, 4, 4, 4, 5, 6)
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 4:
        raise ValueError(f"k: must be an integer >= 4, not {k!r}")
    k = int(k)
    parts = [1] * 5 + [k - 2] * 5 + [(k - 1) * (k - 4) // 2, (k - 2) * (k - 3) // 2]
    return tuple(sorted(m for m in parts if m > 0))


def _pattern(multiplicities: Sequence[int] | np.ndarray) -> str:
    """``[1, 1, 4, 6] → "2×1, 1×4, 1×6"``: how many distinct eigenvalues have each multiplicity."""
    counts = sorted(Counter(int(m) for m in multiplicities).items())
    return ", ".join(f"{count}×{m}" for m, count in counts)


def multiplicities(spectra: xr.Dataset, *, against: str, rtol: float = CLUSTER_RTOL) -> xr.Dataset:
    """Per ``k``, the distinct eigenvalues and their multiplicities against the analytic ones.

    Parameters
    ----------
    spectra : xarray.Dataset
        Spectra by k (:func:`representatives`, :func:`spectra_by_k`).
    against : {"global minimum", "S_{k-1} x S_1"}
        ``"global minimum"``: the distinct values of
        :func:`~pipeline.relu.global_minimum_spectrum` and their multiplicities, value by value;
        ``"S_{k-1} x S_1"``: the multiplicities of :func:`type_a_multiplicities` as a multiset (the
        notes give no values; ``d = k`` and ``k ≥ 4`` only).
    rtol : float, default CLUSTER_RTOL
        Passed to :func:`distinct_eigenvalues`, for the spectra and the closed form alike.

    Returns
    -------
    xarray.Dataset
        On ``k``: ``distinct`` and ``expected_distinct`` (counts), ``pattern`` and
        ``expected_pattern`` (``"5×1, 5×4, 1×5, 1×6"``: five distinct eigenvalues of multiplicity
        1, …), ``matches`` (the multiplicities agree), ``value_error`` (largest distance to the
        closed form's distinct values, NaN for ``"S_{k-1} x S_1"`` or when the counts differ);
        on ``(k, level)``: ``value`` and ``multiplicity`` of each distinct eigenvalue, ascending,
        padded with NaN and 0.

    Raises
    ------
    ValueError
        Naming ``against`` (unknown, or ``"S_{k-1} x S_1"`` with ``d ≠ k`` or ``k < 4``) or
        ``spectra``.
    """
    if against not in ANALYTIC:
        raise ValueError(f"against: must be one of {', '.join(ANALYTIC)}, not {against!r}")
    rows = _spectra(spectra)
    found, expected, errors = [], [], []
    for k, d, values in rows:
        distinct, counts = distinct_eigenvalues(values, rtol=rtol)
        found.append((distinct, counts))
        if against == "global minimum":
            exact, exact_counts = distinct_eigenvalues(global_minimum_spectrum(k, d), rtol=rtol)
            expected.append(exact_counts)
            same = exact.size == distinct.size
            errors.append(float(np.abs(exact - distinct).max()) if same else math.nan)
        else:
            if d != k or k < 4:
                reason = f"the S_{{k-1}} x S_1 pattern is known for d = k >= 4, not k = {k}, d = {d}"
                raise ValueError(f"against: {reason}")
            expected.append(np.array(type_a_multiplicities(k)))
            errors.append(math.nan)
    if against == "global minimum":
        # Value by value: each distinct eigenvalue must have the closed form's multiplicity.
        matches = [np.array_equal(c, e) for (_, c), e in zip(found, expected, strict=True)]
    else:
        matches = [np.array_equal(np.sort(c), e) for (_, c), e in zip(found, expected, strict=True)]
    levels = max(v.size for v, _ in found)
    value = np.full((len(rows), levels), np.nan)
    multiplicity = np.zeros((len(rows), levels), dtype=np.int64)
    for i, (v, c) in enumerate(found):
        value[i, : v.size], multiplicity[i, : c.size] = v, c
    return xr.Dataset(
        {
            "distinct": ("k", np.array([v.size for v, _ in found], dtype=np.int64)),
            "expected_distinct": ("k", np.array([e.size for e in expected], dtype=np.int64)),
            "pattern": ("k", [_pattern(c) for _, c in found]),
            "expected_pattern": ("k", [_pattern(e) for e in expected]),
            "matches": ("k", np.array(matches, dtype=bool)),
            "value_error": ("k", np.array(errors)),
            "value": (("k", "level"), value),
            "multiplicity": (("k", "level"), multiplicity),
        },
        coords={"k": [k for k, _, _ in rows]},
        attrs={"against": against, "rtol": rtol},
    )


# ----------------------------------------------------------------------------------------------
# Claims (a) and (b): bounded and growing eigenvalues
# ----------------------------------------------------------------------------------------------


def _threshold(threshold: float) -> float:
    if not (isinstance(threshold, int | float) and math.isfinite(threshold)):
        raise ValueError(f"threshold: must be a finite number, not {threshold!r}")
    return float(threshold)


def eigenvalue_counts(spectra: xr.Dataset, *, threshold: float = THRESHOLD) -> xr.Dataset:
    """Per ``k``, the eigenvalues below ``threshold`` against ``dk − d − 1``, and above it against ``d + 1``.

    Parameters
    ----------
    spectra : xarray.Dataset
        Spectra by k (:func:`representatives`, :func:`spectra_by_k`).
    threshold : float, default THRESHOLD
        The split between bounded and growing eigenvalues.

    Returns
    -------
    xarray.Dataset
        On ``k``: ``below``, ``above`` (eigenvalues ``< threshold`` and ``≥ threshold``),
        ``expected_below`` (``dk − d − 1``), ``expected_above`` (``d + 1``), ``matches`` (both
        agree), ``largest_below`` and ``smallest_above`` (the gap around the threshold).

    Examples
    --------
    >>> from pipeline.relu import global_minimum_spectrum
    >>> counts = eigenvalue_counts(spectra_by_k({k: global_minimum_spectrum(k) for k in (4, 8)}))
    >>> counts["below"].values.tolist(), counts["expected_below"].values.tolist()
    ([11, 55], [11, 55])
    """
    threshold = _threshold(threshold)
    rows = _spectra(spectra)
    below = np.array([np.count_nonzero(v < threshold) for _, _, v in rows], dtype=np.int64)
    above = np.array([v.size for _, _, v in rows], dtype=np.int64) - below
    d = np.array([d for _, d, _ in rows], dtype=np.int64)
    k = np.array([k for k, _, _ in rows], dtype=np.int64)
    expected_above = d + 1
    expected_below = d * k - d - 1

    def edge(values: np.ndarray, pick: Callable[[np.ndarray], float]) -> float:
        return float(pick(values)) if values.size else math.nan

    return xr.Dataset(
        {
            "below": ("k", below),
            "above": ("k", above),
            "expected_below": ("k", expected_below),
            "expected_above": ("k", expected_above),
            "matches": ("k", (below == expected_below) & (above == expected_above)),
            "largest_below": ("k", [edge(v[v < threshold], np.max) for _, _, v in rows]),
            "smallest_above": ("k", [edge(v[v >= threshold], np.min) for _, _, v in rows]),
        },
        coords={"k": k},
        attrs={"threshold": threshold},
    )


def _least_squares(columns: Sequence[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients of ``y ≈ Σ_j c_j columns[j]`` and their standard errors.

    The errors come from the residuals (``σ² = RSS/(n − p)``, covariance ``σ²(XᵀX)⁻¹``); with as
    many points as coefficients they are undefined (NaN).
    """
    X = np.column_stack(columns)
    coefficients = np.linalg.lstsq(X, y, rcond=None)[0]
    free = y.size - X.shape[1]
    if free <= 0:
        return coefficients, np.full(X.shape[1], math.nan)
    variance = float(np.sum((y - X @ coefficients) ** 2)) / free
    return coefficients, np.sqrt(variance * np.diag(np.linalg.inv(X.T @ X)))


def growth_fit(
    spectra: xr.Dataset,
    *,
    threshold: float = THRESHOLD,
    rtol: float = CLUSTER_RTOL,
    inverse_powers: int = 0,
) -> xr.Dataset:
    """The distinct growing eigenvalues followed across ``k``, each fitted linearly in ``k``.

    At every ``k`` the distinct eigenvalues (:func:`distinct_eigenvalues` of the whole spectrum)
    at or above ``threshold`` are numbered in ascending order; branch ``i`` is the ``i``-th of them
    at every ``k``, so every ``k`` must have the same number.  Each branch is fitted by least
    squares, ``λ = slope·k + intercept`` (plus ``Σ_j c_j k^{−j}``, ``j = 1 … inverse_powers``),
    and its slope compared with the nearer of :data:`SLOPES`.

    A straight line carries the finite-``k`` curvature of the branch (its slope is ``s + O(1/k²)``):
    over ``6 ≤ k ≤ 20`` that moves the fitted slope up to 0.011 from its limit, far more than the
    standard error, which measures only the scatter about the line.  The branches are analytic in
    ``1/k`` at large ``k`` (the global minimum's ``λ₊``, ``μ±`` expand so), and terms in ``1/k``,
    ``1/k²`` absorb the curvature: with ``inverse_powers=2`` the type-A slopes come within 0.0021
    of their limits.

    Parameters
    ----------
    spectra : xarray.Dataset
        Spectra by k, at least ``2 + inverse_powers`` values of ``k``.
    threshold : float, default THRESHOLD
    rtol : float, default CLUSTER_RTOL
    inverse_powers : int, default 0
        Terms ``k^{−1} … k^{−n}`` added to the line.

    Returns
    -------
    xarray.Dataset
        On ``(branch, k)``: ``value`` and ``multiplicity``; on ``branch``: ``slope``,
        ``slope_stderr`` (NaN with no more ``k`` than coefficients), ``intercept``,
        ``reference`` (the nearer of :data:`SLOPES`), ``reference_name`` and ``deviation``
        (``slope − reference``); on ``(branch, power)``: ``correction``, the ``c_j``.

    Raises
    ------
    ValueError
        Naming ``spectra`` when it has too few ``k``, or when the number of distinct growing
        eigenvalues differs between two ``k`` (no branch can be followed); ``threshold`` or
        ``inverse_powers``.

    Examples
    --------
    >>> from pipeline.relu import global_minimum_spectrum
    >>> fit = growth_fit(spectra_by_k({k: global_minimum_spectrum(k) for k in range(6, 21)}))
    >>> fit["reference_name"].values.tolist(), fit["multiplicity"].sel(k=20).values.tolist()
    (['1/(2π)', '1/4', '1/4'], [1, 19, 1])
    >>> [round(float(s), 4) for s in fit["slope"]]
    [0.1497, 0.2517, 0.2594]
    """
    threshold = _threshold(threshold)
    if isinstance(inverse_powers, bool) or not isinstance(inverse_powers, int) or inverse_powers < 0:
        raise ValueError(f"inverse_powers: must be an integer >= 0, not {inverse_powers!r}")
    rows = _spectra(spectra, minimum=2 + inverse_powers)
    branches = []
    for _, _, values in rows:
        distinct, counts = distinct_eigenvalues(values, rtol=rtol)
        keep = distinct >= threshold
        branches.append((distinct[keep], counts[keep]))
    sizes = {k: v.size for (k, _, _), (v, _) in zip(rows, branches, strict=True)}
    if len(set(sizes.values())) != 1:
        shown = ", ".join(f"{n} at k = {k}" for k, n in sizes.items())
        reason = f"the growing part has different numbers of distinct eigenvalues ({shown})"
        raise ValueError(f"spectra: {reason}")
    ks = np.array([k for k, _, _ in rows], dtype=float)
    value = np.array([v for v, _ in branches]).T
    multiplicity = np.array([c for _, c in branches]).T
    columns = [ks, np.ones_like(ks)] + [ks ** (-j) for j in range(1, inverse_powers + 1)]
    fits = [_least_squares(columns, row) for row in value]
    coefficients = np.array([c for c, _ in fits]).reshape(value.shape[0], len(columns))
    slope = coefficients[:, 0]
    nearest = np.abs(slope[:, None] - np.array(SLOPES)[None, :]).argmin(axis=1)
    reference = np.array(SLOPES)[nearest]
    return xr.Dataset(
        {
            "value": (("branch", "k"), value),
            "multiplicity": (("branch", "k"), multiplicity.astype(np.int64)),
            "slope": ("branch", slope),
            "slope_stderr": ("branch", np.array([e[0] for _, e in fits])),
            "intercept": ("branch", coefficients[:, 1]),
            "correction": (("branch", "power"), coefficients[:, 2:]),
            "reference": ("branch", reference),
            "reference_name": ("branch", [SLOPE_NAMES[i] for i in nearest]),
            "deviation": ("branch", slope - reference),
        },
        coords={
            "k": ks.astype(np.int64),
            "branch": np.arange(value.shape[0]),
            "power": -np.arange(1, inverse_powers + 1),
        },
        attrs={"threshold": threshold, "inverse_powers": inverse_powers},
    )


def _power_fit(ks: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """``values ≈ C·k^p`` by least squares on the logarithms: ``(p, its standard error)``.

    NaN where a value is not positive (an exact constant has no power) or with fewer than two
    ``k``; the error is NaN with two.
    """
    if ks.size < 2 or not np.all(values > 0):
        return math.nan, math.nan
    coefficients, errors = _least_squares([np.log(ks), np.ones_like(ks)], np.log(values))
    return float(coefficients[0]), float(errors[0])


def bounded_approach(spectra: xr.Dataset, *, threshold: float = THRESHOLD) -> xr.Dataset:
    """The bounded eigenvalues' distance to the nearest of :data:`CONSTANTS`, and its decay in ``k``.

    Per ``k``: every eigenvalue below ``threshold`` is assigned to the nearest constant; its
    distance's largest and root-mean-square values are fitted as powers ``C·k^p`` of ``k`` (least
    squares on the logarithms), to compare ``p`` with :data:`APPROACH_EXPONENT`.  The RMS is
    dominated by the ``O(k²)``-fold eigenvalues, the largest distance by the slowest ``O(k)``-fold
    or single ones.

    Parameters
    ----------
    spectra : xarray.Dataset
        Spectra by k (:func:`representatives`, :func:`spectra_by_k`).
    threshold : float, default THRESHOLD

    Returns
    -------
    xarray.Dataset
        On ``k``: ``max_distance``, ``rms_distance``, ``smallest`` (the smallest eigenvalue: the
        bounded part stays off 0); on ``(k, constant)``: ``near``, how many bounded eigenvalues
        are nearest each constant; scalars ``max_exponent``, ``max_exponent_stderr``,
        ``rms_exponent``, ``rms_exponent_stderr`` (NaN with fewer than two ``k``, or three for
        the errors) and ``predicted_exponent``.

    Examples
    --------
    >>> from pipeline.relu import global_minimum_spectrum
    >>> approach = bounded_approach(spectra_by_k({k: global_minimum_spectrum(k) for k in range(6, 21)}))
    >>> approach["near"].sel(k=6).values.tolist()  # k(k − 1)/2, then the k − 1 of λ₋, then k(k − 3)/2
    [15, 5, 9]
    >>> round(float(approach["max_exponent"]), 2)  # λ₋ = 1/4 + (1/π − 1/π²)/k + O(1/k³)
    -1.02
    """
    threshold = _threshold(threshold)
    rows = _spectra(spectra)
    constants = np.array(CONSTANTS)
    largest, rms, near, smallest = [], [], [], []
    for _, _, values in rows:
        bounded = values[values < threshold]
        gaps = np.abs(bounded[:, None] - constants[None, :])
        distance = gaps.min(axis=1)
        largest.append(float(distance.max()) if distance.size else math.nan)
        rms.append(float(np.sqrt(np.mean(distance**2))) if distance.size else math.nan)
        near.append(np.bincount(gaps.argmin(axis=1), minlength=constants.size))
        smallest.append(float(values[0]))
    ks = np.array([k for k, _, _ in rows], dtype=float)
    max_exponent, max_stderr = _power_fit(ks, np.array(largest))
    rms_exponent, rms_stderr = _power_fit(ks, np.array(rms))
    return xr.Dataset(
        {
            "max_distance": ("k", np.array(largest)),
            "rms_distance": ("k", np.array(rms)),
            "smallest": ("k", np.array(smallest)),
            "near": (("k", "constant"), np.array(near, dtype=np.int64)),
            "max_exponent": max_exponent,
            "max_exponent_stderr": max_stderr,
            "rms_exponent": rms_exponent,
            "rms_exponent_stderr": rms_stderr,
            "predicted_exponent": APPROACH_EXPONENT,
        },
        coords={
            "k": ks.astype(np.int64),
            "constant": list(CONSTANT_NAMES),
            "constant_value": ("constant", constants),
        },
        attrs={"threshold": threshold},
    )


def global_minimum_gap(spectra: xr.Dataset) -> xr.Dataset:
    """Claim (c): the sorted spectrum against the global minimum's, per ``k``, and its decay in ``k``.

    Parameters
    ----------
    spectra : xarray.Dataset
        Spectra by k (:func:`representatives`, :func:`spectra_by_k`).

    Returns
    -------
    xarray.Dataset
        On ``k``: ``mean_gap``, ``median_gap``, ``max_gap`` of ``|λ_i − λ_i^*|`` (``i``-th smallest
        eigenvalues here and at the global minimum ``W = V``, :func:`~pipeline.relu.global_minimum_spectrum`);
        scalars ``mean_exponent``, ``mean_exponent_stderr`` (its power fit in ``k``) and
        ``predicted_exponent``.
    """
    rows = _spectra(spectra)
    gaps = [np.abs(values - global_minimum_spectrum(k, d)) for k, d, values in rows]
    ks = np.array([k for k, _, _ in rows], dtype=float)
    mean = np.array([g.mean() for g in gaps])
    exponent, stderr = _power_fit(ks, mean)
    return xr.Dataset(
        {
            "mean_gap": ("k", mean),
            "median_gap": ("k", np.array([np.median(g) for g in gaps])),
            "max_gap": ("k", np.array([g.max() for g in gaps])),
            "mean_exponent": exponent,
            "mean_exponent_stderr": stderr,
            "predicted_exponent": APPROACH_EXPONENT,
        },
        coords={"k": ks.astype(np.int64)},
    )
