"""The structure -> feature Jacobian of one centre and its singular values (SCIENCE.md §4.2).

Two views of the same map:

* ``mode="centered"`` (default): the centre stays at its place and the
  neighbours move; the trivial modes are the 3 rotations about the centre
  (2 for a collinear environment), so CH4 has 12 - 3 = 9 non-trivial directions.
* ``mode="full"``: the centre moves too; the trivial modes are the 3
  translations and 3 rotations (5 for a collinear system), 15 - 6 = 9 for CH4.

The moving atoms are the atoms the descriptor reports a gradient for (the
atoms within the cutoff; see ``DescriptorResult.gradient_pairs``), or an
explicit list. For a periodic structure rotations are not symmetries (the cell
does not rotate with the atoms), so only translations are removed, in full mode.

The Jacobian comes from the family's analytic gradients; every family with
``supports_gradients`` works, third-party ones included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Default relative tolerance of the rank: σ counts as zero below RTOL·σ_max (SCIENCE.md A1).
RTOL = 1e-8


@dataclass
class Jacobian:
    """``d features / d positions`` of one centre, over the atoms that move.

    Attributes
    ----------
    matrix : (n_features, 3 * n_moving) float64, column ``3*k + x`` is atom
        ``atoms[k]`` along Cartesian axis ``x`` (after the feature metric).
    atoms : (n_moving,) indices of the moving atoms.
    vectors : (n_moving, 3) positions of the moving atoms relative to the centre.
    center : index of the centre atom.
    mode : ``"centered"`` or ``"full"``.
    metric : the feature metric applied (see :func:`apply_metric`).
    features : (n_features,) the centre's features, before the metric.
    periodic : whether the structure has periodic directions.
    """

    matrix: np.ndarray
    atoms: np.ndarray
    vectors: np.ndarray
    center: int
    mode: str
    metric: str
    features: np.ndarray
    periodic: bool = False

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.matrix if dtype is None else self.matrix.astype(dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def trivial_modes(self, tol: float = 1e-8) -> np.ndarray:
        """Orthonormal basis (3 n_moving, k) of the rigid motions that leave the features unchanged."""
        return trivial_modes(self.vectors, self.mode, self.periodic, tol)

    def displacement(self, atom: int, direction: Any) -> np.ndarray:
        """A unit displacement vector (3 n_moving,) moving one atom along ``direction``."""
        where = np.flatnonzero(self.atoms == atom)
        if where.size == 0:
            raise ValueError(f"atom {atom} does not move in this Jacobian (atoms {self.atoms})")
        v = np.zeros((len(self.atoms), 3))
        d = np.asarray(direction, dtype=float)
        v[where[0]] = d / np.linalg.norm(d)
        return v.ravel()

    def response(self, displacement: Any) -> float:
        """``|J v| / ‖J‖₂`` for a displacement ``v``: 0 when ``v`` is a null direction."""
        v = np.asarray(displacement, dtype=float).ravel()
        norm = np.linalg.norm(self.matrix, 2)
        if norm == 0:
            return 0.0
        return float(np.linalg.norm(self.matrix @ v) / (norm * np.linalg.norm(v)))


def apply_metric(features: np.ndarray, jac: np.ndarray, metric: Any) -> tuple[np.ndarray, str]:
    """Change the feature-space metric of a Jacobian; return it with the metric's name.

    :param metric: ``"raw"`` (features as computed), ``"unit"`` (features
        normalised to ``|ξ| = 1``: ``J -> (1 - ξ̂ξ̂ᵀ) J / |ξ|``), or an array of
        per-feature scales (``J -> J / scale``, e.g. the standard deviations of
        the features over a dataset; see :func:`feature_scale`), named ``"scaled"``.

    The null directions do not depend on the metric; the singular values and
    the condition number do (SCIENCE.md A8).
    """
    if isinstance(metric, str):
        if metric == "raw":
            return jac, "raw"
        if metric == "unit":
            norm = np.linalg.norm(features)
            if norm == 0:
                raise ValueError("metric='unit' needs non-zero features")
            unit = features / norm
            return (jac - np.outer(unit, unit @ jac)) / norm, "unit"
        raise ValueError(f"metric must be 'raw', 'unit' or an array of scales, got {metric!r}")
    scale = np.asarray(metric, dtype=float).ravel()
    if scale.shape != features.shape:
        raise ValueError(f"metric scales have shape {scale.shape}, features {features.shape}")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ValueError("metric scales must be finite and > 0")
    return jac / scale[:, None], "scaled"


def feature_scale(descriptor: Any, frames: list[Any], center: int | None = 0,
                  floor: float = 1e-12) -> np.ndarray:
    """Per-feature standard deviations over a set of structures (a ``metric`` for standardised features).

    :param center: the centre of each frame, or ``None`` for all atoms.
    :param floor: relative floor (of the largest deviation) for constant features.
    """
    centers = None if center is None else [center]
    results = descriptor.compute(list(frames), centers=centers)
    feats = np.concatenate([r.features for r in results])
    std = feats.std(axis=0)
    return np.maximum(std, floor * max(std.max(), 1e-300))


def jacobian(descriptor: Any, atoms: Any, center: int = 0, *, mode: str = "centered",
             moving: Any = None, metric: Any = "raw") -> Jacobian:
    """The Jacobian of ``center``'s features with respect to the positions that move.

    :param descriptor: any :class:`atomdesc.Descriptor` with position gradients.
    :param atoms: an :class:`ase.Atoms`.
    :param center: index of the centre atom.
    :param mode: ``"centered"`` (centre fixed, neighbours move) or ``"full"``
        (centre and neighbours move).
    :param moving: explicit atom indices that move (default: every atom the
        centre's features depend on, i.e. with a reported gradient).
    :param metric: the feature metric (see :func:`apply_metric`).
    """
    if mode not in ("centered", "full"):
        raise ValueError(f"mode must be 'centered' or 'full', got {mode!r}")
    if not getattr(descriptor, "supports_gradients", True):
        raise ValueError(f"family {descriptor.name!r} has no position gradients")
    n_atoms = len(atoms)
    if not 0 <= int(center) < n_atoms:
        raise ValueError(f"center {center} out of range for {n_atoms} atoms")
    center = int(center)
    # one centre: threads only add overhead
    res = descriptor.compute(atoms, centers=[center], gradients=True, n_threads=1)
    features = np.asarray(res.features[0], dtype=float)
    pairs = np.asarray(res.gradient_pairs)
    values = np.asarray(res.gradient_values)
    if moving is None:
        found = np.unique(pairs[:, 1])
        found = found[found != center]
        moving = np.concatenate([[center], found]) if mode == "full" else found
    else:
        moving = np.asarray(moving, dtype=int).ravel()
        if mode == "centered" and center in moving:
            raise ValueError("in 'centered' mode the centre cannot be among the moving atoms")
        if mode == "full" and center not in moving:
            moving = np.concatenate([[center], moving])
    moving = np.asarray(moving, dtype=np.int64)
    n_feat = features.shape[0]
    jac = np.zeros((n_feat, len(moving), 3))
    column = {int(a): k for k, a in enumerate(moving)}
    for (row, atom), g in zip(pairs, values):
        k = column.get(int(atom))
        if k is not None:
            jac[:, k, :] += g.T
    jac = jac.reshape(n_feat, 3 * len(moving))
    jac, metric_name = apply_metric(features, jac, metric)
    periodic = bool(np.any(atoms.pbc))
    vectors = atoms.positions[moving] - atoms.positions[center]
    if periodic:
        vectors = _nearest_images(atoms, vectors)
    return Jacobian(jac, moving, vectors, center, mode, metric_name, features, periodic)


def _nearest_images(atoms: Any, vectors: np.ndarray) -> np.ndarray:
    from ase.geometry import find_mic

    mic, _ = find_mic(vectors, atoms.cell, atoms.pbc)
    return mic


def trivial_modes(vectors: np.ndarray, mode: str, periodic: bool = False,
                  tol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis of the rigid-motion displacements (rotations, and translations in full mode).

    Rotation generators ``(e_a × r_1, ..., e_a × r_n)`` about the centre and, in
    ``"full"`` mode, translations ``(e_a, ..., e_a)`` are orthonormalised; a
    rank-revealing decomposition drops the dependent ones (the rotation about
    the axis of a collinear environment). Periodic: translations only.
    """
    vectors = np.asarray(vectors, dtype=float).reshape(-1, 3)
    gens = []
    if not periodic:
        for a in np.eye(3):
            gens.append(np.cross(a, vectors).ravel())
    if mode == "full":
        for a in np.eye(3):
            gens.append(np.tile(a, len(vectors)))
    if not gens:
        return np.zeros((3 * len(vectors), 0))
    g = np.array(gens).T
    q, r = np.linalg.qr(g)
    # Householder QR without pivoting is not rank-revealing when a generator
    # vanishes (collinear): an SVD of the small generator matrix is.
    u, s, _ = np.linalg.svd(g, full_matrices=False)
    scale = max(s[0] if s.size else 0.0, 1.0)
    keep = s > tol * scale
    return u[:, keep] if not keep.all() else q


def complement(basis: np.ndarray, dim: int) -> np.ndarray:
    """Orthonormal basis of the orthogonal complement of ``basis`` (dim, k) in R^dim."""
    if basis.shape[1] == 0:
        return np.eye(dim)
    u, _, _ = np.linalg.svd(basis, full_matrices=True)
    return u[:, basis.shape[1]:]


@dataclass
class Sensitivity:
    """Singular values of the Jacobian with the trivial modes projected out.

    Attributes
    ----------
    singular_values : (n_dof,) descending; ``n_dof = 3 n_moving - n_trivial``
        (zeros are appended when there are fewer features than directions).
    rank : number of singular values above ``tol``.
    rtol, tol : relative tolerance and the absolute one it gives (``rtol * σ_max``).
    condition_number : σ_max / σ_min (``inf`` if σ_min = 0).
    null_vectors : (n_null, n_moving, 3) unit displacement vectors of the null
        directions (orthogonal to the trivial modes), in Å of each moving atom.
    right_vectors : (n_dof, n_moving, 3) the displacement for every singular value.
    n_trivial : number of trivial (rigid) modes projected out.
    metric : the feature metric used (``"raw"``, ``"unit"`` or ``"scaled"``).
    """

    singular_values: np.ndarray
    rank: int
    rtol: float
    tol: float
    condition_number: float
    null_vectors: np.ndarray
    right_vectors: np.ndarray
    n_trivial: int
    metric: str
    jacobian: Jacobian = field(repr=False)

    @property
    def n_dof(self) -> int:
        return len(self.singular_values)

    @property
    def n_null(self) -> int:
        return self.n_dof - self.rank

    @property
    def sigma_min(self) -> float:
        return float(self.singular_values[-1]) if self.n_dof else 0.0

    @property
    def sigma_max(self) -> float:
        return float(self.singular_values[0]) if self.n_dof else 0.0

    @property
    def relative_sigma_min(self) -> float:
        """σ_min / σ_max: metric-scale-free measure of local invertibility."""
        return self.sigma_min / self.sigma_max if self.sigma_max > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "center": self.jacobian.center,
            "mode": self.jacobian.mode,
            "metric": self.metric,
            "moving_atoms": self.jacobian.atoms.tolist(),
            "n_features": int(self.jacobian.matrix.shape[0]),
            "n_trivial": self.n_trivial,
            "n_dof": self.n_dof,
            "rank": self.rank,
            "rtol": self.rtol,
            "singular_values": self.singular_values.tolist(),
            "condition_number": _finite_or_str(self.condition_number),
            "relative_sigma_min": self.relative_sigma_min,
            "null_vectors": self.null_vectors.tolist(),
        }

    def summary(self) -> str:
        j = self.jacobian
        lines = [
            f"centre {j.center} ({j.mode} Jacobian, {j.matrix.shape[0]} features, "
            f"{len(j.atoms)} moving atoms, metric {self.metric})",
            f"  {self.n_dof} non-trivial directions ({self.n_trivial} rigid modes removed), "
            f"rank {self.rank} at rtol {self.rtol:g}",
            "  singular values: " + " ".join(f"{s:.3e}" for s in self.singular_values),
            f"  condition number {self.condition_number:.3e}, "
            f"σ_min/σ_max {self.relative_sigma_min:.3e}",
        ]
        for k, v in enumerate(self.null_vectors):
            big = np.argsort(-np.linalg.norm(v, axis=1))[:2]
            parts = ", ".join(f"atom {j.atoms[b]} {np.round(v[b], 3).tolist()}" for b in big)
            lines.append(f"  null direction {k}: {parts}")
        return "\n".join(lines)


def _finite_or_str(x: float) -> float | str:
    return float(x) if np.isfinite(x) else "inf"


def sensitivity(descriptor: Any, atoms: Any = None, center: int = 0, *, mode: str = "centered",
                moving: Any = None, metric: Any = "raw", rtol: float = RTOL,
                jac: Jacobian | None = None) -> Sensitivity:
    """SVD of the Jacobian with the rigid motions projected out (SCIENCE.md §4.2).

    The trivial modes Q (rotations, plus translations in ``"full"`` mode) are
    orthonormalised, B spans their complement, and σ are the singular values
    of ``J B``. The rank counts σ > ``rtol``·σ_max. Pass ``jac`` to reuse a
    :class:`Jacobian` (then ``descriptor``/``atoms`` are ignored).
    """
    if jac is None:
        jac = jacobian(descriptor, atoms, center, mode=mode, moving=moving, metric=metric)
    q = jac.trivial_modes()
    dim = jac.matrix.shape[1]
    b = complement(q, dim)
    jt = jac.matrix @ b
    n_dof = b.shape[1]
    if n_dof == 0:
        empty = np.zeros((0, len(jac.atoms), 3))
        return Sensitivity(np.zeros(0), 0, rtol, 0.0, np.inf, empty, empty, q.shape[1],
                           jac.metric, jac)
    # only V is needed, and all of it: a full U (n_features²) would dominate for wide
    # feature vectors, so ask for it only when there are fewer features than directions
    _, s, vt = np.linalg.svd(jt, full_matrices=jt.shape[0] < jt.shape[1])
    sigma = np.zeros(n_dof)
    sigma[: len(s)] = s
    tol = rtol * sigma[0]
    rank = int(np.count_nonzero(sigma > tol)) if sigma[0] > 0 else 0
    right = (vt @ b.T).reshape(n_dof, len(jac.atoms), 3)
    kappa = sigma[0] / sigma[-1] if sigma[-1] > 0 else np.inf
    return Sensitivity(sigma, rank, rtol, float(tol), float(kappa), right[rank:], right,
                       q.shape[1], jac.metric, jac)
