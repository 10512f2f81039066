"""Cubic Hermite spline tables: how a function given in numpy runs in Fortran.

A table holds values and first derivatives on a uniform grid over
``[0, r_max]``; the kernels interpolate both (``fortran/cutoffs.f90``), so the
derivative they use is the exact derivative of the interpolant and analytic
gradients stay consistent with the features. The grid is refined until the
interpolant matches direct evaluation to the requested accuracy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Function of r returning (value, derivative), both shaped like r.
ValueAndDerivative = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def hermite_table(
    function: ValueAndDerivative,
    r_max: float,
    *,
    rtol: float = 1e-8,
    n_start: int = 256,
    n_limit: int = 2**17,
) -> np.ndarray:
    """Tabulate ``function`` on ``[0, r_max]`` to relative accuracy ``rtol``.

    The error is measured at the midpoints and quarter points of every
    interval, relative to the largest absolute value of the function (a
    cutoff goes to zero, so a pointwise relative error is meaningless there).

    :return: array ``(n, 2)``: column 0 the values, column 1 the derivatives.
    :raises ValueError: if the function returns non-finite values or the
        accuracy is not reached with ``n_limit`` points.
    """
    n = n_start
    while n <= n_limit:
        r = np.linspace(0.0, r_max, n)
        f, df = (np.asarray(a, dtype=np.float64) for a in function(r))
        if f.shape != r.shape or df.shape != r.shape:
            raise ValueError("a tabulated function must return value and derivative shaped like r")
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(df))):
            raise ValueError("a tabulated function returned NaN or inf on [0, r_cut]")
        table = np.ascontiguousarray(np.stack([f, df], axis=1))
        probe = np.concatenate([r[:-1] + (r[1] - r[0]) * t for t in (0.25, 0.5, 0.75)])
        exact, _ = function(probe)
        approx, _ = hermite_evaluate(table, r_max, probe)
        scale = max(np.max(np.abs(f)), np.finfo(float).tiny)
        if np.max(np.abs(approx - exact)) <= rtol * scale:
            return table
        n *= 2
    raise ValueError(
        f"could not tabulate the function to relative accuracy {rtol} with {n_limit} points; "
        "is it smooth on [0, r_cut]?"
    )


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
