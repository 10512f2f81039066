"""Truncation scans over hyper-parameter grids and σ statistics over datasets (SCIENCE.md A5, A6)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .jacobian import RTOL, sensitivity


@dataclass
class TruncationScan:
    """Rank and σ_min over a grid of hyper-parameters at one environment.

    ``records`` holds one dict per grid point: the grid values, ``n_features``,
    ``n_dof``, ``rank``, ``sigma_min``, ``sigma_max``, ``relative_sigma_min``
    (σ_min/σ_max) and ``error`` (a message if that point could not be built).
    """

    names: list[str]
    values: list[list[Any]]
    records: list[dict[str, Any]] = field(default_factory=list)

    def grid(self, key: str = "rank") -> np.ndarray:
        """``key`` as an array shaped like the grid (NaN where a point failed)."""
        shape = tuple(len(v) for v in self.values)
        out = np.full(shape, np.nan)
        for idx, rec in zip(itertools.product(*[range(n) for n in shape]), self.records):
            if rec.get(key) is not None:
                out[idx] = rec[key]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "values": self.values, "records": self.records}

    def summary(self) -> str:
        lines = [" ".join(f"{n:>8}" for n in self.names)
                 + "  features  rank/dof  σ_min/σ_max"]
        for rec in self.records:
            head = " ".join(f"{rec[n]!s:>8}" for n in self.names)
            if rec.get("error"):
                lines.append(f"{head}  failed: {rec['error']}")
            else:
                lines.append(f"{head}  {rec['n_features']:8d}  {rec['rank']:4d}/{rec['n_dof']:<4d}"
                             f"  {rec['relative_sigma_min']:.3e}")
        return "\n".join(lines)


def truncation_scan(factory: str | Callable[..., Any], grid: Mapping[str, Sequence[Any]],
                    atoms: Any, center: int = 0, *, base: Mapping[str, Any] | None = None,
                    mode: str = "centered", metric: Any = "raw",
                    rtol: float = RTOL) -> TruncationScan:
    """Rank and smallest singular value over a grid (e.g. n_max × l_max) at one environment.

    :param factory: a family name (descriptors are built with
        ``atomdesc.descriptor(name, **base, **point)``) or a callable taking the
        grid values as keyword arguments and returning a descriptor.
    :param grid: ``{"n_max": [1, 2, 4], "l_max": [0, 2, 4]}``: the full product is scanned.
    :param base: the other hyper-parameters (with a family name).
    """
    import atomdesc

    names = list(grid)
    values = [list(grid[n]) for n in names]
    scan = TruncationScan(names, values)
    for point in itertools.product(*values):
        kw = dict(zip(names, point))
        rec: dict[str, Any] = {n: _jsonable(v) for n, v in kw.items()}
        try:
            if isinstance(factory, str):
                desc = atomdesc.descriptor(factory, **{**(base or {}), **kw})
            else:
                desc = factory(**kw)
            s = sensitivity(desc, atoms, center, mode=mode, metric=metric, rtol=rtol)
        except ValueError as exc:
            rec.update(error=str(exc), rank=None, n_features=None)
            scan.records.append(rec)
            continue
        rec.update(n_features=int(desc.n_features), n_dof=s.n_dof, rank=s.rank,
                   sigma_min=s.sigma_min, sigma_max=s.sigma_max,
                   relative_sigma_min=s.relative_sigma_min, error=None)
        scan.records.append(rec)
    return scan


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


@dataclass
class DatasetStatistics:
    """σ_min/σ_max (and the rank) over many environments."""

    relative_sigma_min: np.ndarray
    ranks: np.ndarray
    n_dof: np.ndarray
    condition_numbers: np.ndarray
    metric: str

    def to_dict(self) -> dict[str, Any]:
        r = self.relative_sigma_min
        full = self.ranks == self.n_dof
        return {
            "n_environments": int(r.size),
            "metric": self.metric,
            "relative_sigma_min": {
                "min": float(r.min()), "p5": float(np.percentile(r, 5)),
                "median": float(np.median(r)), "p95": float(np.percentile(r, 95)),
                "max": float(r.max()),
            },
            "fraction_full_rank": float(full.mean()),
            "rank_counts": {int(k): int(v) for k, v in zip(*np.unique(self.ranks, return_counts=True))},
        }

    def summary(self) -> str:
        d = self.to_dict()
        s = d["relative_sigma_min"]
        return (f"{d['n_environments']} environments ({self.metric} metric): σ_min/σ_max "
                f"min {s['min']:.2e}, 5% {s['p5']:.2e}, median {s['median']:.2e}, "
                f"95% {s['p95']:.2e}; full rank in {100 * d['fraction_full_rank']:.1f}%")


def dataset_statistics(descriptor: Any, frames: Iterable[Any], center: int = 0, *,
                       mode: str = "centered", metric: Any = "raw",
                       rtol: float = RTOL) -> DatasetStatistics:
    """σ_min/σ_max, rank and condition number of ``center`` over many structures.

    E.g. the 10k random-methane set of SCIENCE.md A5, where ν = 2 shows a heavy
    tail of small σ_min/σ_max and ν = 3 does not.
    """
    rel, ranks, dofs, kappas = [], [], [], []
    name = "raw"
    for atoms in frames:
        s = sensitivity(descriptor, atoms, center, mode=mode, metric=metric, rtol=rtol)
        rel.append(s.relative_sigma_min)
        ranks.append(s.rank)
        dofs.append(s.n_dof)
        kappas.append(s.condition_number)
        name = s.metric
    if not rel:
        raise ValueError("dataset_statistics needs at least one structure")
    return DatasetStatistics(np.array(rel), np.array(ranks), np.array(dofs), np.array(kappas), name)
