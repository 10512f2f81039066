"""Built-in cutoff functions (SCIENCE.md 2.1), evaluated in Fortran by kind number."""

from __future__ import annotations

import numpy as np

from atomdesc.cutoffs import CutoffFunction
from atomdesc.registry import hookimpl


class CosineCutoff(CutoffFunction):
    """f_c = (cos(pi r / r_c) + 1) / 2: Behler's f_c1, DScribe's only cutoff (C1 at r_c)."""

    name = "cosine"
    kernel_id = 1

    def evaluate(self, r):
        x = np.minimum(r, self.r_cut) / self.r_cut
        return 0.5 * (np.cos(np.pi * x) + 1.0), -0.5 * np.pi / self.r_cut * np.sin(np.pi * x)


class Tanh3Cutoff(CutoffFunction):
    """f_c = tanh(1 - r / r_c)**3: Behler's f_c2 (n2p2 type 2, unnormalised; C2 at r_c)."""

    name = "tanh3"
    kernel_id = 2

    def evaluate(self, r):
        t = np.tanh(1.0 - np.minimum(r, self.r_cut) / self.r_cut)
        return t**3, -3.0 * t**2 * (1.0 - t**2) / self.r_cut


class PolynomialCutoff(CutoffFunction):
    """n2p2's polynomial cutoffs: 1 at 0, C^order at r_c (``order`` 1 to 4, default 2)."""

    name = "polynomial"
    kernel_id = 3
    parameters = ("order",)

    # coefficients of f_c - 1 in powers of x = r / r_c, lowest power first
    _COEFFICIENTS = {
        1: [0, 0, -3, 2],
        2: [0, 0, 0, -10, 15, -6],
        3: [0, 0, 0, 0, -35, 84, -70, 20],
        4: [0, 0, 0, 0, 0, -126, 420, -540, 315, -70],
    }

    def __init__(self, r_cut, **params):
        super().__init__(r_cut, **params)
        order = self.params.get("order", 2)
        if order not in self._COEFFICIENTS:
            raise ValueError(f"polynomial cutoff order must be 1, 2, 3 or 4, got {order!r}")
        self.order = int(order)

    def evaluate(self, r):
        x = np.minimum(r, self.r_cut) / self.r_cut
        poly = np.polynomial.Polynomial(self._COEFFICIENTS[self.order])
        return 1.0 + poly(x), poly.deriv()(x) / self.r_cut

    def kernel_parameters(self):
        return [float(self.order)]


@hookimpl
def atomdesc_cutoffs():
    return [CosineCutoff, Tanh3Cutoff, PolynomialCutoff]
