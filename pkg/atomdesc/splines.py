"""Cubic Hermite spline tables: how a function given in numpy runs in Fortran.

A table holds values and first derivatives on a uniform grid over
``[0, r_max]``; the kernels interpolate both (``fortran/cutoffs.f90``), so the
derivative they use is the exact derivative of the interpolant and analytic
gradients stay consistent with the features. The grid is refined until the
interpolant matches direct evaluation to the requested accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Function of r returning (value, derivative), both shaped like r.
ValueAndDerivative = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


#: Derivatives of a cubic Hermite interpolant converge one order slower than
#: values; they are checked to this relative accuracy. The kernels use the
#: exact derivative of the interpolant, so analytic gradients stay consistent
#: with the features either way.
DERIVATIVE_RTOL = 1e-6

#: f(r) -> (values, derivatives) with leading function axes and r last.
MultiFunction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def tabulate(
    function: MultiFunction,
    r_max: float,
    *,
    rtol: float = 1e-8,
    n_start: int = 128,
    n_limit: int = 2**16,
    breakpoints: tuple[float, ...] = (),
) -> np.ndarray:
    """Tabulate several functions of r on ``[0, r_max]`` for the kernels (one grid for all).

    The grid is doubled until cubic Hermite interpolation matches direct
    evaluation at the midpoints and quarter points of every interval, for
    every function, to ``rtol`` relative to the largest absolute value of that
    function (the values and, separately, the derivatives).

    ``breakpoints`` are radii where a function is only C1 (e.g. where a
    shifted-cosine cutoff starts): the grid is chosen with a node on each of
    them when they are rational fractions of ``r_max`` with a denominator up
    to 1000, so every interval interpolates a smooth piece.

    :return: ``(n_grid, 2, n_functions)`` C-ordered: ``[:, 0]`` the values,
        ``[:, 1]`` the derivatives (pass ``.T`` to Fortran).
    :raises ValueError: if the accuracy is not reached with ``n_limit`` points.
    """
    from fractions import Fraction

    q = 1
    for b in breakpoints:
        if 0 < b < r_max:
            frac = Fraction(b / r_max).limit_denominator(1000)
            if abs(float(frac) - b / r_max) < 1e-13:
                q = q * frac.denominator // math.gcd(q, frac.denominator)
    m = max(q, n_start // q * q)  # intervals; doubled until accurate

    def at(numerators: np.ndarray, denominator: int) -> np.ndarray:
        """(values, derivatives) stacked, (2, n_functions, len) at k * (r_max / denominator),
        ``r_max`` itself for k = denominator: the nodes of np.linspace, the same bits whatever
        the (power of two) level they are first evaluated at."""
        r = numerators * (r_max / denominator)
        r[numerators == denominator] = r_max
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
    nodes = at(np.arange(m + 1), m)
    middles = at(2 * np.arange(m) + 1, 2 * m)
    while m + 1 <= n_limit:
        k = np.arange(m)
        quarters = at(4 * k + 1, 4 * m), at(4 * k + 3, 4 * m)
        probe = np.concatenate([4 * k + 1, 4 * k + 2, 4 * k + 3]) * (r_max / (4 * m))
        exact, dexact = np.concatenate([quarters[0], middles, quarters[1]], axis=-1)
        f, df = nodes
        worst = 0.0
        for j in range(f.shape[0]):
            table = np.stack([f[j], df[j]], axis=1)
            approx, dapprox = hermite_evaluate(table, r_max, probe)
            scale = max(np.abs(f[j]).max(), 1e-300)
            dscale = max(np.abs(df[j]).max(), 1e-300)
            worst = max(
                worst,
                np.abs(approx - exact[j]).max() / scale,
                np.abs(dapprox - dexact[j]).max() / dscale * rtol / DERIVATIVE_RTOL,
            )
            if worst > rtol:
                break
        if worst <= rtol:
            return np.ascontiguousarray(np.stack([f.T, df.T], axis=1))
        nodes = interleave(nodes, middles)
        middles = interleave(*quarters)
        m *= 2
    raise ValueError(
        f"could not tabulate the functions to relative accuracy {rtol} with {n_limit} "
        "points; are they smooth on [0, r_cut]?"
    )


def hermite_table(
    function: ValueAndDerivative,
    r_max: float,
    *,
    rtol: float = 1e-8,
    n_start: int = 256,
    n_limit: int = 2**17,
) -> np.ndarray:
    """Tabulate one function of r (a cutoff, say) with :func:`tabulate`.

    :return: array ``(n, 2)``: column 0 the values, column 1 the derivatives.
    """

    def one(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, df = (np.asarray(a, dtype=np.float64) for a in function(r))
        if f.shape != r.shape or df.shape != r.shape:
            raise ValueError("a tabulated function must return value and derivative shaped like r")
        return f[None], df[None]

    return tabulate(one, r_max, rtol=rtol, n_start=n_start, n_limit=n_limit)[:, :, 0]


def hermite_evaluate(
    table: np.ndarray, r_max: float, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate a table from :func:`hermite_table` (numpy twin of the Fortran)."""
    r = np.asarray(r, dtype=np.float64)
    n = table.shape[0]
    h = r_max / (n - 1)
    s = r / h
    i = np.minimum(s.astype(np.int64), n - 2)
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
    outside = r >= r_max
    return np.where(outside, 0.0, f), np.where(outside, 0.0, df)
