"""Radial bases: the interface plugins implement for density-expansion families."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


class RadialBasis:
    """A set of radial functions R_nl(r) on ``[0, r_cut]``.

    Subclasses set ``name`` and implement :meth:`evaluate` in numpy; families
    that expand a density (the SOAP family) tabulate them for the kernels
    with :func:`atomdesc.splines.hermite_table`.
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

    def evaluate(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return values and radial derivatives, each ``(l_max + 1, n_max, len(r))``."""
        raise NotImplementedError
