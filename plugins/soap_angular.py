"""Angular side of the SOAP families (``plugins/soap.py``): real spherical harmonics as
``fortran/soap.f90`` computes them, and the Clebsch-Gordan (Wigner 3j) coupling tensors of
the bispectrum in that real basis.
"""

from __future__ import annotations

import functools
import math

import numpy as np


# ------------------------------------------------------------------ spherical harmonics


def real_ylm(l_max: int, u: np.ndarray) -> np.ndarray:
    """Real orthonormal Y_lm of unit vectors u (n, 3) as in ``fortran/soap.f90``: (n, (l_max+1)^2)."""
    u = np.atleast_2d(u)
    x, y, z = u[:, 0], u[:, 1], u[:, 2]
    cm = [np.ones_like(x)]
    sm = [np.zeros_like(x)]
    for m in range(1, l_max + 1):
        cm.append(x * cm[-1] - y * sm[-1])
        sm.append(x * sm[m - 1] + y * cm[m - 1])
    q = {}
    dfact = 1.0
    for m in range(l_max + 1):
        if m > 0:
            dfact *= 2 * m - 1
        q[m, m] = np.full_like(z, dfact)
        if m + 1 <= l_max:
            q[m + 1, m] = (2 * m + 1) * z * dfact
        for l in range(m + 2, l_max + 1):
            q[l, m] = ((2 * l - 1) * z * q[l - 1, m] - (l + m - 1) * q[l - 2, m]) / (l - m)
    out = np.zeros((len(u), (l_max + 1) ** 2))
    for l in range(l_max + 1):
        i0 = l * l + l
        for m in range(l + 1):
            nrm = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            if m == 0:
                out[:, i0] = nrm * q[l, 0]
            else:
                out[:, i0 + m] = math.sqrt(2) * nrm * q[l, m] * cm[m]
                out[:, i0 - m] = math.sqrt(2) * nrm * q[l, m] * sm[m]
    return out


def _wigner_3j(j1: int, j2: int, j3: int, m1: int, m2: int, m3: int) -> float:
    """Wigner 3j symbol (Racah's formula, exact integer arithmetic)."""
    if m1 + m2 + m3 != 0 or abs(m1) > j1 or abs(m2) > j2 or abs(m3) > j3:
        return 0.0
    if j3 < abs(j1 - j2) or j3 > j1 + j2:
        return 0.0
    f = math.factorial
    tri = f(j1 + j2 - j3) * f(j1 - j2 + j3) * f(-j1 + j2 + j3) / f(j1 + j2 + j3 + 1)
    pre = tri * f(j1 + m1) * f(j1 - m1) * f(j2 + m2) * f(j2 - m2) * f(j3 + m3) * f(j3 - m3)
    total = 0
    for k in range(0, j1 + j2 + j3 + 1):
        args = (k, j1 + j2 - j3 - k, j1 - m1 - k, j2 + m2 - k, j3 - j2 + m1 + k, j3 - j1 - m2 + k)
        if min(args) < 0:
            continue
        den = 1
        for a in args:
            den *= f(a)
        total += (-1) ** k / den
    return (-1) ** (j1 - j2 - m3) * math.sqrt(pre) * total


@functools.cache
def _real_from_complex(l: int) -> np.ndarray:
    """U with real Y_l = U @ complex Y_l (scipy's convention, Condon-Shortley phase)."""
    from scipy.special import sph_harm_y

    rng = np.random.default_rng(12345 + l)
    u = rng.normal(size=(4 * (2 * l + 1), 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    theta = np.arccos(np.clip(u[:, 2], -1, 1))
    phi = np.arctan2(u[:, 1], u[:, 0])
    yc = np.array([sph_harm_y(l, m, theta, phi) for m in range(-l, l + 1)])
    yr = real_ylm(l, u)[:, l * l:(l + 1) ** 2].T
    return yr @ np.linalg.pinv(yc)


@functools.cache
def coupling_tensor(l1: int, l2: int, l3: int) -> np.ndarray:
    """The real rotation-invariant tensor T[m1, m2, m3] of l1 ⊗ l2 ⊗ l3 (unit norm).

    Built from the Wigner 3j symbols and the change of basis to the real Y_lm
    of the kernels; it is real for even l1 + l2 + l3 (a scalar) and the
    imaginary part is taken for odd (a pseudoscalar).
    """
    w = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for i, m1 in enumerate(range(-l1, l1 + 1)):
        for j, m2 in enumerate(range(-l2, l2 + 1)):
            m3 = -m1 - m2
            if abs(m3) <= l3:
                w[i, j, m3 + l3] = _wigner_3j(l1, l2, l3, m1, m2, m3)
    v1, v2, v3 = (np.linalg.inv(_real_from_complex(l)) for l in (l1, l2, l3))
    t = np.einsum("abc,ai,bj,ck->ijk", w, v1, v2, v3, optimize=True)  # one factor at a time
    part = t.real if (l1 + l2 + l3) % 2 == 0 else t.imag
    part[np.abs(part) < 1e-13] = 0.0
    return part / np.linalg.norm(part)
