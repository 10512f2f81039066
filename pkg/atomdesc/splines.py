"""Cubic Hermite spline tables: how a function given in numpy runs in Fortran.

A table holds values and first derivatives at the nodes of a grid over
``[0, r_max]``, uniform between the radii where a function is only C1; the
kernels interpolate both (``fortran/splines.f90``), so the
derivative they use is the exact derivative of the interpolant and analytic
gradients stay consistent with the features. The grid is refined until the
interpolant matches direct evaluation to the requested accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import NamedTuple

import numpy as np

#: Function of r returning (value, derivative), both shaped like r.
ValueAndDerivative = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


#: Derivatives of a cubic Hermite interpolant converge one order slower than
#: values: they must be accurate to this relative to their largest value...
DERIVATIVE_RTOL = 1e-6
#: ...and are refined on towards this many times the values' accuracy (SOAP's
#: radial tables, values to 1e-10: derivatives to 1e-8, as close as the features
#: to another code's exact derivatives) while each doubling of the grid still
#: improves them fourfold (eightfold in theory): a function evaluated by
#: quadrature stops improving at its own noise. The kernels use the exact
#: derivative of the interpolant, so analytic gradients stay consistent with
#: the features either way.
DERIVATIVE_RTOL_FACTOR = 100.0

#: f(r) -> (values, derivatives) with leading function axes and r last.
MultiFunction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class SplineTable(NamedTuple):
    """Values and derivatives of functions at the nodes of a piecewise-uniform grid.

    The grid is uniform between breakpoints: piece ``p`` starts at radius
    ``grid[p, 0]`` with node ``grid[p, 1]`` (0-based) and has spacing
    ``grid[p, 2]`` up to the next piece's start. A function that is only C1 at
    a breakpoint is smooth on every interval, so it interpolates as well as a
    smooth one.
    """

    #: (n_nodes, 2, n_functions): ``[:, 0]`` the values, ``[:, 1]`` the derivatives
    data: np.ndarray
    #: (n_pieces, 3): start radius, first node, spacing of each piece
    grid: np.ndarray

    def kernel_args(self) -> tuple[np.ndarray, np.ndarray]:
        """The table as the kernels take it: ``(n_functions, 2, n_nodes)`` in Fortran order,
        and the grid flat (three numbers per piece)."""
        if not (self.grid.ndim == 2 and self.grid.shape[1] == 3 and len(self.grid)
                and self.data.ndim == 3 and len(self.data) >= 2):
            raise RuntimeError("internal error: malformed spline table")  # never handed to Fortran
        return self.data.T, self.grid.ravel()

    def evaluate(self, r: np.ndarray, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Function ``k`` and its derivative at ``r`` as the kernels interpolate them."""
        return hermite_evaluate(self.data[:, :, k], self.grid, r)


def tabulate(
    function: MultiFunction,
    r_max: float,
    *,
    rtol: float = 1e-8,
    n_start: int = 128,
    n_limit: int = 2**16,
    breakpoints: tuple[float, ...] = (),
) -> SplineTable:
    """Tabulate several functions of r on ``[0, r_max]`` for the kernels (one grid for all).

    The grid is doubled until cubic Hermite interpolation matches direct
    evaluation at the midpoints and quarter points of every interval, for
    every function, to ``rtol`` relative to the largest absolute value of that
    function, and the derivatives to :data:`DERIVATIVE_RTOL` relative to the largest
    absolute derivative, or to :data:`DERIVATIVE_RTOL_FACTOR` times ``rtol`` where a
    doubling of the grid still improves them fourfold and ``n_limit`` allows it.

    ``breakpoints`` are radii where a function is only C1 (e.g. where a
    shifted-cosine cutoff starts): each one is a node of the grid, which is
    uniform between them (spacings as equal as whole numbers of intervals allow).

    :raises ValueError: if the accuracy is not reached with ``n_limit`` points.
    """
    inside = sorted({float(b) for b in breakpoints if 0 < b < r_max})
    q = _common_denominator([b / r_max for b in inside])
    if q:  # one uniform grid has a node on every breakpoint: a single piece
        edges, per_piece = np.array([0.0, r_max]), np.array([max(q, n_start // q * q)])
    else:  # pieces of about the same spacing, each uniform
        edges = np.array([0.0, *inside, r_max])
        per_piece = np.maximum(1, np.rint(n_start * np.diff(edges) / r_max)).astype(np.int64)
    lengths = np.diff(edges)
    # the first interval of each piece at the first level
    first = np.concatenate([[0], np.cumsum(per_piece)])
    m = int(first[-1])  # intervals; doubled until accurate

    def radii(numerators: np.ndarray, denominator: int) -> np.ndarray:
        """The points u = numerators / denominator (in first-level intervals) as radii: piece
        p maps [first[p], first[p + 1]] linearly onto [edges[p], edges[p + 1]], its ends
        exactly; the same bits whatever the (power of two) level a point is first met at."""
        piece = np.searchsorted(first[1:-1] * denominator, numerators, side="right")
        offset = numerators - first[piece] * denominator
        steps = per_piece[piece] * denominator
        r = edges[piece] + offset * (lengths[piece] / steps)
        end = offset == steps
        r[end] = edges[piece[end] + 1]
        return r

    def at(numerators: np.ndarray, denominator: int) -> np.ndarray:
        """(values, derivatives) stacked, (2, n_functions, len) at the points u."""
        r = radii(numerators, denominator)
        f, df = function(r)
        both = np.stack([np.reshape(f, (-1, len(r))), np.reshape(df, (-1, len(r)))])
        if not np.isfinite(both).all():
            raise ValueError(f"a tabulated function returned NaN or inf on [0, {r_max}]")
        return both

    def interleave(even: np.ndarray, odd: np.ndarray) -> np.ndarray:
        out = np.empty((*even.shape[:-1], even.shape[-1] + odd.shape[-1]))
        out[..., 0::2] = even
        out[..., 1::2] = odd
        return out

    # Each doubling reuses every point evaluated before: the new nodes are the
    # old midpoints, the new midpoints the old quarter points.
    level = 1  # nodes per first-level interval
    nodes = at(np.arange(m + 1), 1)
    middles = at(2 * np.arange(m) + 1, 2)
    derivative_goal = min(DERIVATIVE_RTOL, DERIVATIVE_RTOL_FACTOR * rtol)
    last_derivative = math.inf  # the derivatives' error at the level before
    while m + 1 <= n_limit:
        k = np.arange(m)
        quarters = at(4 * k + 1, 4 * level), at(4 * k + 3, 4 * level)
        probe = radii(np.concatenate([4 * k + 1, 4 * k + 2, 4 * k + 3]), 4 * level)
        grid = np.stack([edges[:-1], first[:-1] * level, lengths / (per_piece * level)], axis=1)
        exact, dexact = np.concatenate([quarters[0], middles, quarters[1]], axis=-1)
        f, df = nodes
        value, derivative = 0.0, 0.0
        for j in range(f.shape[0]):
            table = np.stack([f[j], df[j]], axis=1)
            approx, dapprox = hermite_evaluate(table, grid, probe)
            scale = max(np.abs(f[j]).max(), 1e-300)
            dscale = max(np.abs(df[j]).max(), 1e-300)
            value = max(value, np.abs(approx - exact[j]).max() / scale)
            derivative = max(derivative, np.abs(dapprox - dexact[j]).max() / dscale)
        finest = 2 * m + 1 > n_limit  # the derivatives' goal is not worth a refusal
        if value <= rtol and derivative <= DERIVATIVE_RTOL and (
                derivative <= derivative_goal or derivative > last_derivative / 4 or finest):
            return SplineTable(np.ascontiguousarray(np.stack([f.T, df.T], axis=1)),
                               np.ascontiguousarray(grid))
        last_derivative = derivative
        nodes = interleave(nodes, middles)
        middles = interleave(*quarters)
        m *= 2
        level *= 2
    raise ValueError(
        f"could not tabulate the functions to relative accuracy {rtol} with {n_limit} "
        "points; are they smooth on [0, r_cut]?"
    )


def _common_denominator(fractions: list[float], limit: int = 1000) -> int | None:
    """The least common denominator (up to ``limit`` each) of numbers in (0, 1) that are
    such fractions to 1e-13, 1 for none; None if one of them is not."""
    q = 1
    for x in fractions:
        frac = Fraction(x).limit_denominator(limit)
        if abs(float(frac) - x) >= 1e-13:
            return None
        q = q * frac.denominator // math.gcd(q, frac.denominator)
    return q


def hermite_table(
    function: ValueAndDerivative,
    r_max: float,
    *,
    rtol: float = 1e-8,
    n_start: int = 256,
    n_limit: int = 2**17,
    breakpoints: tuple[float, ...] = (),
) -> SplineTable:
    """Tabulate one function of r (a cutoff, say) with :func:`tabulate`."""

    def one(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, df = (np.asarray(a, dtype=np.float64) for a in function(r))
        if f.shape != r.shape or df.shape != r.shape:
            raise ValueError("a tabulated function must return value and derivative shaped like r")
        return f[None], df[None]

    return tabulate(one, r_max, rtol=rtol, n_start=n_start, n_limit=n_limit,
                    breakpoints=breakpoints)


def hermite_evaluate(
    table: np.ndarray, grid: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate ``table`` ((n_nodes, 2): values, derivatives) on the nodes of ``grid``
    (:class:`SplineTable`) at ``r`` in ``[0, r_max)``: the numpy twin of the Fortran
    (``spline_interval`` in ``fortran/splines.f90``); 0 from the last node on."""
    r = np.asarray(r, dtype=np.float64)
    n = table.shape[0]
    piece = np.searchsorted(grid[1:, 0], r, side="right")
    h = grid[piece, 2]
    s = grid[piece, 1] + (r - grid[piece, 0]) / h
    i = np.clip(s.astype(np.int64), 0, n - 2)
    t = s - i
    y0, d0 = table[i, 0], table[i, 1]
    y1, d1 = table[i + 1, 0], table[i + 1, 1]
    f = (
        (1 + 2 * t) * (1 - t) ** 2 * y0
        + t * (1 - t) ** 2 * h * d0
        + t**2 * (3 - 2 * t) * y1
        + t**2 * (t - 1) * h * d1
    )
    df = 6 * t * (t - 1) * (y0 - y1) / h + (3 * t**2 - 4 * t + 1) * d0 + (3 * t**2 - 2 * t) * d1
    outside = s >= n - 1
    return np.where(outside, 0.0, f), np.where(outside, 0.0, df)
