"""Following a quasi-constant manifold along the softest direction (SCIENCE.md §4.3 A7).

Parsaeifard & Goedecker (JCP 156, 034302 (2022)) walk along the right-singular
vector of the smallest singular value of the structure -> feature Jacobian and
find long paths on which the features barely change; the Comment by Pozdnyakov
et al. (JCP 157, 177101 (2022)) shows that σ_min stays small but non-zero on
them: they are orbits around the discrete singular points (e.g. the X± branch
points, SCIENCE.md §5.1), not manifolds of exact degeneracy.

:func:`follow_null_direction` takes fixed-length steps along that vector (the
rotations about the centre projected out, its sign kept continuous from step
to step) and records σ_min, the relative feature change and the displacement
along the path; :func:`plane_overlap_e4` is P&G's 4-body target function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from .jacobian import RTOL, sensitivity


def plane_overlap_e4(atoms: Any, center: int = 0, neighbours: Any = None) -> float:
    """P&G's 4-body target ``E4 = Σ_{pairs of planes} (n̂·n̂′)²``.

    The planes are those through every triple of neighbours (the H triangles of
    CH4: 4 planes, 6 pairs); ``n̂`` are their unit normals, so E4 does not depend
    on the length unit (Bohr in P&G, Å here). It is invariant under rotations,
    reflections and permutations, and changes along the quasi-constant manifolds
    that the features barely see.

    :param neighbours: indices of the atoms spanning the planes (default: every
        atom but the centre).
    """
    if neighbours is None:
        neighbours = [k for k in range(len(atoms)) if k != center]
    pos = atoms.positions[np.asarray(neighbours, dtype=int)]
    normals = []
    for i, j, k in combinations(range(len(pos)), 3):
        n = np.cross(pos[j] - pos[i], pos[k] - pos[i])
        normals.append(n / np.linalg.norm(n))
    if len(normals) < 2:
        raise ValueError("E4 needs at least 4 neighbours (two planes)")
    normals = np.array(normals)
    cos = normals @ normals.T
    return float(np.sum(np.triu(cos, 1) ** 2))


@dataclass
class ManifoldPath:
    """The path of :func:`follow_null_direction`, sampled every ``save_every`` steps.

    Attributes
    ----------
    steps : (n_saved,) step index of each sample (0 = the start).
    path_length : (n_saved,) arc length walked (Å): ``step * steps``.
    sigma_min, relative_sigma_min : σ_min of the rotation-projected Jacobian
        (in the feature metric) and σ_min/σ_max.
    feature_change : ``|ξ - ξ₀| / |ξ₀|`` relative to the start.
    displacement : ``|x - x₀|`` (Å) of the moving atoms, all coordinates together.
    observables : name -> (n_saved,) values of the extra observables (e.g. ``"E4"``).
    frames : the structures at the samples (``ase.Atoms``).
    """

    steps: np.ndarray
    path_length: np.ndarray
    sigma_min: np.ndarray
    relative_sigma_min: np.ndarray
    feature_change: np.ndarray
    displacement: np.ndarray
    observables: dict[str, np.ndarray] = field(default_factory=dict)
    frames: list[Any] = field(default_factory=list, repr=False)
    step: float = 0.0
    center: int = 0
    metric: str = "raw"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able arrays (without the frames)."""
        return {
            "step": self.step, "center": self.center, "metric": self.metric,
            "steps": self.steps.tolist(), "path_length": self.path_length.tolist(),
            "sigma_min": self.sigma_min.tolist(),
            "relative_sigma_min": self.relative_sigma_min.tolist(),
            "feature_change": self.feature_change.tolist(),
            "displacement": self.displacement.tolist(),
            "observables": {k: v.tolist() for k, v in self.observables.items()},
        }

    def summary(self) -> str:
        rs = self.relative_sigma_min
        lines = [
            f"{int(self.steps[-1])} steps of {self.step:g} Å from centre {self.center} "
            f"(metric {self.metric}), {len(self.steps)} samples",
            f"  σ_min/σ_max: start {rs[0]:.2e}, min {rs.min():.2e}, max {rs.max():.2e}, "
            f"end {rs[-1]:.2e}",
            f"  |Δx| at the end {self.displacement[-1]:.3f} Å (max {self.displacement.max():.3f} Å, "
            f"path length {self.path_length[-1]:.3f} Å), "
            f"|Δξ|/|ξ| {self.feature_change[-1]:.2e} (max {self.feature_change.max():.2e})",
        ]
        for name, v in self.observables.items():
            lines.append(f"  {name}: start {v[0]:.4g}, end {v[-1]:.4g}, "
                         f"range {v.min():.4g}..{v.max():.4g}")
        return "\n".join(lines)


def follow_null_direction(descriptor: Any, atoms: Any, center: int = 0, step: float = 1e-4,
                          n_steps: int = 1000, save_every: int = 10, *,
                          metric: Any = "raw", direction: Any = None,
                          observables: Mapping[str, Callable[[Any], float]] | None = None,
                          keep_frames: bool = True, rtol: float = RTOL) -> ManifoldPath:
    """Walk along the softest non-trivial direction of ``center``'s features (SCIENCE.md A7).

    Every step moves the neighbours (the centre stays put) by ``step`` Å along
    the right-singular vector of the smallest singular value of the Jacobian
    with the rotations about the centre projected out. The vector's sign is
    chosen to continue the previous step (the first step follows ``direction``,
    a displacement of the moving atoms, when given).

    :param metric: the feature metric of the Jacobian (see
        :func:`atomdesc.analysis.jacobian`); it changes which direction is softest.
    :param observables: name -> ``f(atoms)``, evaluated at every sample (e.g.
        ``{"E4": plane_overlap_e4}``).
    :param keep_frames: store the structure at every sample.
    """
    if step <= 0 or n_steps < 0 or save_every < 1:
        raise ValueError("need step > 0, n_steps >= 0 and save_every >= 1")
    current = atoms.copy()
    observables = dict(observables or {})
    sens = sensitivity(descriptor, current, center, metric=metric, rtol=rtol)
    moving = sens.jacobian.atoms
    x0 = current.positions[moving].copy()
    xi0 = sens.jacobian.features.copy()
    norm0 = np.linalg.norm(xi0)
    previous = None if direction is None else np.asarray(direction, dtype=float).reshape(-1, 3)
    rec: dict[str, list[Any]] = {k: [] for k in ("steps", "sigma", "rel", "dxi", "dx")}
    values: dict[str, list[float]] = {k: [] for k in observables}
    frames: list[Any] = []

    def record(k: int) -> None:
        rec["steps"].append(k)
        rec["sigma"].append(sens.sigma_min)
        rec["rel"].append(sens.relative_sigma_min)
        rec["dxi"].append(np.linalg.norm(sens.jacobian.features - xi0) / norm0)
        rec["dx"].append(np.linalg.norm(current.positions[moving] - x0))
        for name, f in observables.items():
            values[name].append(float(f(current)))
        if keep_frames:
            frames.append(current.copy())

    record(0)
    for k in range(1, n_steps + 1):
        if sens.n_dof == 0:
            break
        v = sens.right_vectors[-1]
        if previous is not None and np.sum(v * previous) < 0:
            v = -v
        previous = v
        current.positions[moving] += step * v
        sens = sensitivity(descriptor, current, center, metric=metric, rtol=rtol,
                           moving=moving)
        if k % save_every == 0 or k == n_steps:
            record(k)
    steps = np.asarray(rec["steps"])
    return ManifoldPath(steps, step * steps, np.asarray(rec["sigma"]), np.asarray(rec["rel"]),
                        np.asarray(rec["dxi"]), np.asarray(rec["dx"]),
                        {k: np.asarray(v) for k, v in values.items()}, frames, step,
                        int(center), sens.metric)
