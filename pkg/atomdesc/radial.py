"""Radial bases for density expansions, and their Gaussian-density radial integrals.

A radial basis gives functions ``R_nl(r)`` in numpy (:meth:`RadialBasis.evaluate`).
A density-expansion family (the SOAP families) needs, for each neighbour at
distance r, the radial integral of a Gaussian density of width sigma centred
on the neighbour (SCIENCE.md 2.4)::

    I_nl(r) = 4 pi N_g exp(-r^2 / 2 sigma^2) int_0^inf x^2 R_nl(x) exp(-x^2 / 2 sigma^2) i_l(x r / sigma^2) dx

with i_l the modified spherical Bessel function of the first kind.
:func:`gaussian_radial_integral` computes it by Gauss-Legendre quadrature for
any basis (a basis with a closed form overrides :meth:`RadialBasis.radial_integral`),
and :func:`radial_table` tabulates ``I_nl`` together with its derivative on a
grid (uniform between breakpoints), refining it until cubic Hermite interpolation matches
direct evaluation to a relative 1e-8: this table is what the Fortran kernels
interpolate.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

# radial_table: the one tabulation routine, shared with the cutoffs
from .splines import tabulate as radial_table  # noqa: F401


class RadialBasis:
    """A set of radial functions R_nl(r), n < n_max, l <= l_max.

    Subclasses set ``name`` and implement :meth:`evaluate` in numpy. Bases
    whose functions do not depend on l still return an ``l_max + 1`` axis.
    ``support`` is the radius beyond which the functions vanish (``inf`` for
    Gaussian-type orbitals). Extra parameters are keyword arguments listed in
    ``parameters``.
    """

    name: ClassVar[str]
    parameters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, n_max: int, l_max: int, r_cut: float, **params: Any) -> None:
        unknown = set(params) - set(self.parameters)
        if unknown:
            raise ValueError(f"radial basis {self.name!r} has no parameter(s) {sorted(unknown)}")
        self.n_max = int(n_max)
        self.l_max = int(l_max)
        self.r_cut = float(r_cut)
        self.params = params

    @property
    def support(self) -> float:
        """Functions vanish for r >= support (default: r_cut)."""
        return self.r_cut

    def evaluate(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return values and radial derivatives, each ``(l_max + 1, n_max, len(r))``."""
        raise NotImplementedError

    def radial_integral(
        self, r: np.ndarray, sigma: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Closed-form ``I_nl(r)`` and ``dI_nl/dr`` for N_g = 1, or None to integrate numerically."""
        return None

    def overlap(self, n_points: int = 4000) -> np.ndarray:
        """``S[l, n, n'] = int_0^support r^2 R_nl R_n'l dr`` by quadrature."""
        top = self.support if np.isfinite(self.support) else _gaussian_tail(self)
        x, w = np.polynomial.legendre.leggauss(200)
        edges = np.linspace(0.0, top, n_points // 200 + 1)
        r = np.concatenate([(a + b) / 2 + (b - a) / 2 * x for a, b in zip(edges[:-1], edges[1:])])
        wr = np.concatenate([(b - a) / 2 * w for a, b in zip(edges[:-1], edges[1:])])
        values, _ = self.evaluate(r)
        return np.einsum("lnr,lmr,r->lnm", values, values, wr * r**2)


def _gaussian_tail(basis: RadialBasis) -> float:
    """A radius beyond which an infinitely supported basis is negligible."""
    r = np.linspace(basis.r_cut, 20.0 * basis.r_cut, 2000)
    values, _ = basis.evaluate(r)
    size = np.abs(values).max(axis=(0, 1)) * r
    peak = size.max()
    small = np.nonzero(size > 1e-17 * max(peak, 1e-300))[0]
    return float(r[small[-1]] if len(small) else basis.r_cut) + basis.r_cut


def lowdin(overlap: np.ndarray) -> np.ndarray:
    """``S^(-1/2)`` of a symmetric positive definite matrix (Löwdin orthonormalisation).

    Computed as ``sqrtm(inv(S))``, DScribe's exact procedure, so that its
    (ill-conditioned) bases are reproduced to the last digits.

    :raises ValueError: if the matrix is numerically not positive definite.
    """
    from scipy.linalg import sqrtm

    root = sqrtm(np.linalg.inv(overlap))
    if np.iscomplexobj(root):
        if np.abs(root.imag).max() > 1e-10 * np.abs(root.real).max():
            raise ValueError(
                "the radial basis functions are numerically linearly dependent: "
                "use fewer radial functions (n_max) or a larger r_cut"
            )
        root = root.real
    return np.ascontiguousarray(root)


def scaled_spherical_in(l: int, z: np.ndarray) -> np.ndarray:
    """``i_l(z) exp(-z)`` for z >= 0, without overflow."""
    from scipy.special import ive

    z = np.asarray(z, dtype=np.float64)
    safe = np.where(z > 0, z, 1.0)
    value = np.sqrt(np.pi / (2.0 * safe)) * ive(l + 0.5, safe)
    at_zero = 1.0 if l == 0 else 0.0
    return np.where(z > 0, value, at_zero)


def scaled_spherical_in_orders(l_max: int, z: np.ndarray) -> np.ndarray:
    """``i_l(z) exp(-z)`` for l = 0 .. l_max (leading axis), z >= 0.

    Large z (at least 10 + l_max^2 / 4): i_0 and i_1 in closed form, then
    ``i_(l+1) = i_(l-1) - (2l + 1) / z i_l`` upwards, which is accurate there
    (checked against mpmath to 2e-14 up to l = 22). Elsewhere scipy evaluates
    the two highest orders and the same recurrence runs downwards, adding
    positive terms only (the stable direction). Where the highest orders
    underflow (z near 0), scipy gives every order.
    """
    z = np.asarray(z, dtype=np.float64)
    out = np.empty((l_max + 1, *z.shape))
    large = z >= 10.0 + l_max * l_max / 4.0
    if large.any():
        out[:, large] = _upwards(l_max, z[large])
    small = ~large
    if small.any():
        out[:, small] = _downwards(l_max, z[small])
    return out


def _upwards(l_max: int, z: np.ndarray) -> np.ndarray:
    out = np.empty((l_max + 1, len(z)))
    e = np.exp(-2.0 * z)
    out[0] = (1.0 - e) / (2.0 * z)
    if l_max > 0:
        out[1] = (1.0 + e) / (2.0 * z) - (1.0 - e) / (2.0 * z * z)
    for l in range(1, l_max):
        out[l + 1] = out[l - 1] - (2 * l + 1) / z * out[l]
    return out


def _downwards(l_max: int, z: np.ndarray) -> np.ndarray:
    out = np.empty((l_max + 1, len(z)))
    out[l_max] = scaled_spherical_in(l_max, z)
    if l_max == 0:
        return out
    out[l_max - 1] = scaled_spherical_in(l_max - 1, z)
    safe = np.where(z > 0, z, 1.0)
    for l in range(l_max - 1, 0, -1):
        out[l - 1] = out[l + 1] + (2 * l + 1) / safe * out[l]
    out[:, z == 0] = 0.0
    out[0, z == 0] = 1.0
    tiny = (z > 0) & (out[l_max] == 0.0)
    if tiny.any():
        for l in range(l_max + 1):
            out[l, tiny] = scaled_spherical_in(l, z[tiny])
    return out


def gaussian_radial_integral(
    basis: RadialBasis, r: np.ndarray, sigma: float, *, n_panels: int = 6, n_nodes: int = 16,
    width: float = 12.0, chunk: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """``I_nl(r)`` and ``dI_nl/dr`` (N_g = 1) by Gauss-Legendre quadrature.

    The integrand is ``x^2 R_nl(x) exp(-(x - r)^2 / 2 sigma^2) [i_l(x r/sigma^2) exp(-x r/sigma^2)]``,
    negligible outside ``|x - r| < width * sigma``; that window (cut at the
    basis support) is split into ``n_panels`` panels of ``n_nodes`` points.
    """
    r = np.asarray(r, dtype=np.float64)
    closed = basis.radial_integral(r, sigma)
    if closed is not None:
        return closed
    t, w = np.polynomial.legendre.leggauss(n_nodes)
    t = (t + 1.0) / 2.0
    w = w / 2.0
    support = basis.support
    s2 = sigma * sigma
    L, N = basis.l_max + 1, basis.n_max
    value = np.zeros((L, N, len(r)))
    deriv = np.zeros((L, N, len(r)))
    for start in range(0, len(r), chunk):
        rc = r[start:start + chunk]
        lo = np.maximum(rc - width * sigma, 0.0)
        hi = np.minimum(rc + width * sigma, support)
        hi = np.maximum(hi, lo)
        panel = (hi - lo) / n_panels
        # nodes (len(rc), n_panels * n_nodes)
        offs = (np.arange(n_panels)[:, None] + t[None, :]).ravel()
        x = lo[:, None] + panel[:, None] * offs[None, :]
        wx = panel[:, None] * np.tile(w, n_panels)[None, :]
        R, _ = basis.evaluate(x.ravel())
        R = R.reshape(L, N, *x.shape)
        z = x * rc[:, None] / s2
        gauss = np.exp(-((x - rc[:, None]) ** 2) / (2.0 * s2))
        base = wx * x * x * gauss
        ise = scaled_spherical_in_orders(L, z)
        for l in range(L):
            kern = base * ise[l]
            # d/dr [exp(-(x^2 + r^2)/2s^2) i_l(x r / s^2)]
            #   = exp(...) [-(r/s^2) i_l + (x/s^2) i_l'],  i_l' = (l i_(l-1) + (l+1) i_(l+1)) / (2l+1)
            if l == 0:
                dil = ise[1]
            else:
                dil = (l * ise[l - 1] + (l + 1) * ise[l + 1]) / (2 * l + 1)
            dkern = base * (-(rc[:, None] / s2) * ise[l] + (x / s2) * dil)
            value[l, :, start:start + chunk] = np.einsum("nrq,rq->nr", R[l], kern)
            deriv[l, :, start:start + chunk] = np.einsum("nrq,rq->nr", R[l], dkern)
    return 4.0 * np.pi * value, 4.0 * np.pi * deriv


