"""Cutoff functions: the interface plugins implement, and their kernel form."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .splines import hermite_table


class CutoffFunction:
    """A smooth switching function f_c(r) that is 1-like near 0 and 0 for r >= r_cut.

    Subclasses set ``name`` and implement :meth:`evaluate` in numpy. Built-in
    cutoffs also set ``kernel_id`` to the Fortran implementation's number
    (``fortran/cutoffs.f90``); any other cutoff (``kernel_id = 0``) runs in the
    kernels through a spline table checked to a relative 1e-8.

    Extra parameters are keyword arguments of the constructor; list their
    names in ``parameters`` so descriptors can store and rebuild them. A cutoff
    that is only C1 somewhere inside (0, r_cut) lists those radii in
    ``breakpoints``: its table gets a node on each, so it stays as accurate.
    """

    name: ClassVar[str]
    kernel_id: ClassVar[int] = 0
    parameters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, r_cut: float, **params: Any) -> None:
        unknown = set(params) - set(self.parameters)
        if unknown:
            raise ValueError(
                f"cutoff {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"it takes {list(self.parameters)}"
            )
        self.r_cut = float(r_cut)
        self.params = params

    def evaluate(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(f_c(r), d f_c / d r)`` for an array ``r >= 0``."""
        raise NotImplementedError

    def hypers(self) -> str | dict[str, Any]:
        """JSON form: the name alone, or ``{"name": ..., **params}``."""
        return {"name": self.name, **self.params} if self.params else self.name

    def kernel_parameters(self) -> list[float]:
        """Numbers the Fortran implementation reads (``cpar``)."""
        return [0.0]

    @property
    def breakpoints(self) -> tuple[float, ...]:
        """Radii in (0, r_cut) where the function is only C1 (none by default)."""
        return ()

    def kernel_args(self) -> tuple[int, np.ndarray, np.ndarray]:
        """``(kind, cpar, table)`` as the kernels take them; table is ``(2, n)``.
        A tabulated cutoff's ``cpar`` is its table's grid: the number of pieces, then
        (start, first node, spacing) of each (``spline_interval`` in ``fortran/splines.f90``)."""
        if self.kernel_id != 0:
            table = np.zeros((2, 2), order="F")  # unused by built-in kinds
            cpar = np.asarray(self.kernel_parameters(), dtype=np.float64)
        else:
            spline = hermite_table(self._evaluate_checked, self.r_cut,
                                   breakpoints=tuple(self.breakpoints))
            table = spline.data[:, :, 0].T
            cpar = np.concatenate([[len(spline.grid)], spline.grid.ravel()])
        return self.kernel_id, cpar, table

    def _evaluate_checked(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, df = self.evaluate(r)
        inside = r < self.r_cut
        return np.where(inside, f, 0.0), np.where(inside, df, 0.0)

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other.r_cut == self.r_cut  # type: ignore[attr-defined]
            and other.params == self.params  # type: ignore[attr-defined]
        )

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}(r_cut={self.r_cut}{extra})"


def parse_cutoff_spec(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split ``"cosine"`` or ``{"name": "polynomial", "order": 3}`` into name and params."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        params = dict(spec)
        return params.pop("name"), params
    raise ValueError(
        f"cutoff must be a name or a dict with a 'name' key, got {spec!r}"
    )
