"""Radial side of the SOAP families (``plugins/soap.py``): the built-in radial bases,
featomic's shifted-cosine cutoff and DScribe's radial weightings (SCIENCE.md 2.4).

The bases and the cutoff are registered through the hooks in ``plugins/soap.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from atomdesc.cutoffs import CutoffFunction
from atomdesc.descriptor import positive_float
from atomdesc.radial import RadialBasis, lowdin

#: DScribe's decay threshold of the density: atoms up to r_cut + sigma sqrt(-2 ln 1e-3).
DSCRIBE_THRESHOLD = 1e-3


# ------------------------------------------------------------------ radial bases


class GTOBasis(RadialBasis):
    """DScribe's l-dependent Gaussian-type orbitals, Löwdin-orthonormalised on [0, inf).

    ``g_nl(r) = sum_k beta_lnk r^l exp(-alpha_kl r^2)`` with
    ``alpha_kl = -ln(1e-3 / a_k^l) / a_k^2``, ``a = linspace(1, r_cut, n_max)``.
    The Gaussian-density radial integral has a closed form.
    """

    name = "gto"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from scipy.special import gamma

        if self.r_cut <= 1.0:
            raise ValueError("the gto radial basis needs r_cut > 1 Å")
        a = np.linspace(1.0, self.r_cut, self.n_max)
        self.alphas = np.zeros((self.l_max + 1, self.n_max))
        self.betas = np.zeros((self.l_max + 1, self.n_max, self.n_max))
        for l in range(self.l_max + 1):
            alpha = -np.log(DSCRIBE_THRESHOLD / a**l) / a**2
            m = alpha[:, None] + alpha[None, :]
            overlap = 0.5 * gamma(l + 1.5) * m ** (-l - 1.5)
            self.alphas[l] = alpha
            self.betas[l] = lowdin(overlap)

    @property
    def support(self) -> float:
        return np.inf

    def evaluate(self, r):
        r = np.asarray(r, dtype=np.float64)
        values = np.zeros((self.l_max + 1, self.n_max, len(r)))
        derivs = np.zeros_like(values)
        for l in range(self.l_max + 1):
            prim = r[None, :] ** l * np.exp(-self.alphas[l][:, None] * r[None, :] ** 2)
            dprim = (
                (l * r[None, :] ** max(l - 1, 0) if l > 0 else 0.0)
                * np.exp(-self.alphas[l][:, None] * r[None, :] ** 2)
                - 2 * self.alphas[l][:, None] * r[None, :] * prim
            )
            values[l] = self.betas[l] @ prim
            derivs[l] = self.betas[l] @ dprim
        return values, derivs

    def radial_integral(self, r, sigma):
        # int_0^inf x^(2+l) e^(-a x^2) i_l(c x) dx = sqrt(pi) / 2^(l+2) c^l a^-(l+3/2) e^(c^2/4a)
        eta = 0.5 / sigma**2
        r = np.asarray(r, dtype=np.float64)
        values = np.zeros((self.l_max + 1, self.n_max, len(r)))
        derivs = np.zeros_like(values)
        for l in range(self.l_max + 1):
            a = self.alphas[l] + eta
            pref = 4 * np.pi * np.sqrt(np.pi) / 2 ** (l + 2) * (2 * eta) ** l * a ** (-(l + 1.5))
            k = self.alphas[l] * eta / a
            e = np.exp(-k[:, None] * r[None, :] ** 2)
            prim = pref[:, None] * r[None, :] ** l * e
            dprim = pref[:, None] * (
                (l * r[None, :] ** (l - 1) if l > 0 else 0.0) * e
                - 2 * k[:, None] * r[None, :] ** (l + 1) * e
            )
            values[l] = self.betas[l] @ prim
            derivs[l] = self.betas[l] @ dprim
        return values, derivs


class FeatomicGTOBasis(RadialBasis):
    """featomic's (librascal's) l-independent GTO basis, Löwdin-orthonormalised on [0, inf).

    ``R_n(r) ∝ r^n exp(-r^2 / 2 sigma_n^2)``, ``sigma_n = r_cut max(sqrt(n), 1) / n_max``,
    n = 0 .. n_max - 1 (featomic's ``max_radial`` is n_max - 1).
    """

    name = "gto_featomic"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from scipy.special import gamma

        n = np.arange(self.n_max)
        self.widths = self.r_cut * np.maximum(np.sqrt(n), 1.0) / self.n_max
        self.norms = np.sqrt(2.0 / (self.widths ** (2 * n + 3) * gamma(n + 1.5)))
        b = 0.5 / self.widths[:, None] ** 2 + 0.5 / self.widths[None, :] ** 2
        p = (n[:, None] + n[None, :] + 3) / 2.0
        overlap = self.norms[:, None] * self.norms[None, :] * 0.5 * gamma(p) * b ** (-p)
        self.coefficients = lowdin(overlap)

    @property
    def support(self) -> float:
        return np.inf

    def evaluate(self, r):
        r = np.asarray(r, dtype=np.float64)
        n = np.arange(self.n_max)[:, None]
        powers = np.empty((self.n_max, len(r)))  # r^n by products: pow is slow
        powers[0] = 1.0
        for k in range(1, self.n_max):
            powers[k] = powers[k - 1] * r
        lower = np.zeros_like(powers)  # n r^(n-1)
        lower[1:] = n[1:] * powers[:-1]
        inverse_w2 = 1.0 / self.widths[:, None] ** 2
        e = self.norms[:, None] * np.exp(-0.5 * r * r * inverse_w2)
        prim = powers * e
        dprim = (lower - r * inverse_w2 * powers) * e
        values = self.coefficients @ prim
        derivs = self.coefficients @ dprim
        return (
            np.broadcast_to(values, (self.l_max + 1, *values.shape)),
            np.broadcast_to(derivs, (self.l_max + 1, *derivs.shape)),
        )


class PolynomialBasis(RadialBasis):
    """Bartók's polynomials ``(r_cut - r)^(k+2)``, k = 1 .. n_max, Löwdin-orthonormalised on [0, r_cut]."""

    name = "polynomial"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        k = np.arange(1, self.n_max + 1, dtype=np.float64)
        s = k[:, None] + k[None, :]
        overlap = 2 * self.r_cut ** (7 + s) / ((5 + s) * (6 + s) * (7 + s))
        self.coefficients = lowdin(overlap)
        self.powers = k + 2

    def evaluate(self, r):
        r = np.asarray(r, dtype=np.float64)
        x = np.clip(self.r_cut - r, 0.0, None)
        xp = np.empty((self.n_max + 1, len(x)))  # x^2 .. x^(n_max + 2) by products: pow is slow
        xp[0] = x * x
        for k in range(1, self.n_max + 1):
            xp[k] = xp[k - 1] * x
        values = self.coefficients @ xp[1:]
        derivs = self.coefficients @ (-self.powers[:, None] * xp[:-1])
        return (
            np.broadcast_to(values, (self.l_max + 1, *values.shape)),
            np.broadcast_to(derivs, (self.l_max + 1, *derivs.shape)),
        )


class ShiftedCosineCutoff(CutoffFunction):
    """1 up to r_cut - width, then (1 + cos(pi (r - r_cut + width) / width)) / 2 (featomic's)."""

    name = "shifted_cosine"
    parameters = ("width",)

    def __init__(self, r_cut, **params):
        super().__init__(r_cut, **params)
        self.width = positive_float(self.params.get("width", 0.5), "shifted_cosine width")
        if self.width > self.r_cut:
            raise ValueError("shifted_cosine width must not exceed r_cut")

    @property
    def breakpoints(self) -> tuple[float, ...]:
        """Where the function is only C1 (radial tables put a grid node there)."""
        return (self.r_cut - self.width,)

    def evaluate(self, r):
        r = np.asarray(r, dtype=np.float64)
        x = np.clip((r - self.r_cut + self.width) / self.width, 0.0, 1.0)
        return 0.5 * (1 + np.cos(np.pi * x)), -0.5 * np.pi / self.width * np.sin(np.pi * x)


# ------------------------------------------------------------------ weighting


def weighting_function(weighting: dict[str, Any]):
    """DScribe's radial weighting w(r) (``poly``, ``pow``, ``exp``) with its derivative."""
    name = weighting["function"]
    r0, c = weighting["r0"], weighting["c"]
    if name == "poly":
        m = weighting["m"]

        def f(r):
            x = np.minimum(r / r0, 1.0)
            base = 1 + 2 * x**3 - 3 * x**2
            value = c * base**m
            deriv = c * m * base ** max(m - 1, 0) * (6 * x**2 - 6 * x) / r0 if m > 0 else 0 * r
            return np.where(r <= r0, value, 0.0), np.where(r <= r0, deriv, 0.0)
    elif name == "pow":
        d, m = weighting["d"], weighting["m"]

        def f(r):
            x = r / r0
            den = d + x**m
            return c / den, -c * m * x ** (m - 1) / r0 / den**2
    else:  # exp
        d = weighting["d"]

        def f(r):
            e = np.exp(-r / r0)
            return c / (d + e), c * e / r0 / (d + e) ** 2
    return f


def check_weighting(weighting: Any) -> dict[str, Any] | None:
    if weighting is None:
        return None
    if not isinstance(weighting, dict):
        raise ValueError(f"weighting must be a dict or None, got {weighting!r}")
    w = dict(weighting)
    allowed = {"function", "r0", "c", "d", "m", "w0", "threshold"}
    unknown = set(w) - allowed
    if unknown:
        raise ValueError(f"weighting has unknown key(s) {sorted(unknown)}")
    if "w0" in w:
        w0 = float(w["w0"])
        if not np.isfinite(w0) or w0 < 0:
            raise ValueError("weighting w0 must be >= 0")
        w["w0"] = w0
    if "function" not in w:
        return w
    if w["function"] not in ("poly", "pow", "exp"):
        raise ValueError(f"weighting function must be 'poly', 'pow' or 'exp', got {w['function']!r}")
    need = {"poly": ("r0", "c", "m"), "pow": ("r0", "c", "d", "m"), "exp": ("r0", "c", "d")}
    for key in need[w["function"]]:
        if key not in w:
            raise ValueError(f"weighting {w['function']!r} needs {key!r}")
        value = float(w[key])
        if not np.isfinite(value) or value < 0 or (key == "r0" and value == 0):
            raise ValueError(f"weighting {key} must be a finite number {'> 0' if key == 'r0' else '>= 0'}")
        w[key] = value
    w.pop("threshold", None)
    return w
