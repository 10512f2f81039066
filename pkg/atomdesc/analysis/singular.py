"""Singular points of the structure -> feature map and their kind (SCIENCE.md §4.2).

A null direction of the (rigid-mode-projected) Jacobian is

* **symmetry**-induced if it is forced by the point group of the environment:
  an invariant descriptor has ``J g = J`` for every operation g (a proper or
  improper rotation permuting like atoms), so the rows of J lie in the totally
  symmetric displacements; the rank is bounded by their number (minus the
  rigid modes among them). Directions outside that subspace are null for
  *every* invariant descriptor (desirable);
* **incompleteness**-induced if it is totally symmetric (not forced) but a
  higher body-order ``reference`` descriptor responds to it (spurious);
* **truncation**-induced if it disappears when the basis grows (``larger``:
  descriptors of growing size, e.g. larger n_max / l_max) (spurious).

The point group is found numerically (no spglib): candidate orthogonal maps
send two reference neighbours onto every compatible pair of like atoms, and
are kept if they permute the whole environment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .jacobian import RTOL, Sensitivity, complement, jacobian, sensitivity, trivial_modes


# ------------------------------------------------------------------ symmetry


def symmetry_operations(vectors: Any, species: Any, tol: float = 1e-5,
                        improper: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Point-group operations of a centred environment as ``(R, perm)``.

    ``R`` is orthogonal and ``R @ vectors[k] == vectors[perm[k]]`` with equal
    species. A collinear environment has an infinite group: it is represented
    by generators (a C5 rotation about the axis, a mirror containing it, and
    the inversion / perpendicular C2 when the environment allows them), which
    is all the invariant-subspace computation needs.
    """
    v = np.asarray(vectors, dtype=float).reshape(-1, 3)
    z = np.asarray(species)
    n = len(v)
    ops: list[tuple[np.ndarray, np.ndarray]] = []

    def add(rot: np.ndarray) -> None:
        if not improper and np.linalg.det(rot) < 0:
            return
        perm = _match(rot, v, z, tol)
        if perm is not None and not any(np.allclose(rot, r, atol=1e-8) for r, _ in ops):
            ops.append((rot, perm))

    add(np.eye(3))
    norms = np.linalg.norm(v, axis=1)
    nonzero = np.flatnonzero(norms > tol)
    if nonzero.size == 0:
        return ops
    a = nonzero[np.argmax(norms[nonzero])]
    ua = v[a] / norms[a]
    # the neighbour most orthogonal to a fixes the second frame vector
    perp = np.linalg.norm(np.cross(ua, v[nonzero]), axis=1)
    b = nonzero[np.argmax(perp)]
    if perp.max() < tol:  # collinear: generators of C∞v / D∞h
        m = _orthogonal_unit(ua)
        add(_axis_rotation(ua, 2 * np.pi / 5))
        add(np.eye(3) - 2 * np.outer(m, m))
        add(-np.eye(3))
        add(_axis_rotation(m, np.pi))
        return ops
    frame = _frame(v[a], v[b])
    for a2 in range(n):
        if z[a2] != z[a] or abs(norms[a2] - norms[a]) > tol:
            continue
        for b2 in range(n):
            if (b2 == a2 or z[b2] != z[b] or abs(norms[b2] - norms[b]) > tol
                    or abs(v[a2] @ v[b2] - v[a] @ v[b]) > tol * (1 + norms[a] * norms[b])):
                continue
            target = _frame(v[a2], v[b2])
            for sign in (1.0, -1.0):
                t = target.copy()
                t[:, 2] *= sign
                add(t @ frame.T)
    return ops


def _frame(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    e1 = x / np.linalg.norm(x)
    e2 = y - (y @ e1) * e1
    e2 /= np.linalg.norm(e2)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=1)


def _orthogonal_unit(u: np.ndarray) -> np.ndarray:
    trial = np.eye(3)[np.argmin(np.abs(u))]
    m = trial - (trial @ u) * u
    return m / np.linalg.norm(m)


def _axis_rotation(u: np.ndarray, angle: float) -> np.ndarray:
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _match(rot: np.ndarray, v: np.ndarray, z: np.ndarray, tol: float) -> np.ndarray | None:
    moved = v @ rot.T
    dist = np.linalg.norm(moved[:, None, :] - v[None, :, :], axis=-1)
    dist[z[:, None] != z[None, :]] = np.inf
    perm = np.argmin(dist, axis=1)
    if np.all(dist[np.arange(len(v)), perm] < tol) and len(set(perm.tolist())) == len(v):
        return perm
    return None


def displacement_operator(rot: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """The (3n, 3n) matrix of an operation on displacements: ``(g d)[perm[k]] = R d[k]``."""
    n = len(perm)
    d = np.zeros((3 * n, 3 * n))
    for k, p in enumerate(perm):
        d[3 * p: 3 * p + 3, 3 * k: 3 * k + 3] = rot
    return d


@dataclass
class SymmetryAnalysis:
    """The point group of an environment and the rank bound it gives.

    Attributes
    ----------
    n_operations : operations found (the identity included); for a collinear
        environment, the number of generators used.
    infinite : the group is infinite (collinear environment).
    improper : whether improper operations (reflections) were allowed.
    n_invariant : totally symmetric displacement coordinates.
    rank_bound : upper bound of the Jacobian rank (rigid modes removed) for any
        descriptor invariant under these operations.
    n_dof : non-trivial directions.
    symmetric_basis : (3n, rank_bound) orthonormal totally symmetric,
        non-rigid displacements; the null directions outside it are forced.
    """

    n_operations: int
    infinite: bool
    improper: bool
    n_invariant: int
    rank_bound: int
    n_dof: int
    symmetric_basis: np.ndarray = field(repr=False)
    operations: list[tuple[np.ndarray, np.ndarray]] = field(repr=False, default_factory=list)

    @property
    def n_forced_null(self) -> int:
        """Null directions forced by symmetry: ``n_dof - rank_bound``."""
        return self.n_dof - self.rank_bound

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_operations": self.n_operations,
            "infinite": self.infinite,
            "improper": self.improper,
            "n_invariant": self.n_invariant,
            "rank_bound": self.rank_bound,
            "n_dof": self.n_dof,
            "n_forced_null": self.n_forced_null,
        }


def symmetry_analysis(vectors: Any, species: Any, mode: str = "centered",
                      improper: bool = True, periodic: bool = False,
                      tol: float = 1e-5) -> SymmetryAnalysis:
    """Rank bound from the point group of a centred environment (SCIENCE.md §4.2, class 1).

    :param vectors: (n, 3) positions of the moving atoms relative to the centre
        (the centre itself, at the origin, is included in ``"full"`` mode).
    :param species: (n,) their species (any comparable labels).
    :param improper: allow reflections (for O(3)-invariant features); ``False``
        for features with pseudoscalars (SO(3) only).
    :param periodic: periodic structure: no point-group analysis (bound = n_dof).
    """
    v = np.asarray(vectors, dtype=float).reshape(-1, 3)
    q = trivial_modes(v, mode, periodic)
    dim = 3 * len(v)
    n_dof = dim - q.shape[1]
    if periodic:
        basis = complement(q, dim)
        return SymmetryAnalysis(1, False, improper, dim, n_dof, n_dof, basis, [])
    ops = symmetry_operations(v, species, tol=tol, improper=improper)
    infinite = np.linalg.matrix_rank(v, tol=tol) <= 1 and np.any(np.linalg.norm(v, axis=1) > tol)
    stack = np.vstack([displacement_operator(r, p) - np.eye(dim) for r, p in ops])
    _, s, vt = np.linalg.svd(stack)
    s_full = np.zeros(dim)
    s_full[: len(s)] = s
    invariant = vt[s_full < 1e-8].T  # (dim, n_inv)
    # remove the rigid modes that are themselves totally symmetric
    if q.shape[1] and invariant.shape[1]:
        proj = invariant.T @ q
        u, sv, _ = np.linalg.svd(proj, full_matrices=True)
        n_rigid = int(np.count_nonzero(sv > 1e-8))
        symmetric = invariant @ u[:, n_rigid:]
    else:
        symmetric = invariant
    return SymmetryAnalysis(len(ops), bool(infinite), improper, invariant.shape[1],
                            symmetric.shape[1], n_dof, symmetric, ops)


def environment_symmetry(atoms: Any, center: int = 0, mode: str = "centered",
                         moving: Any = None, improper: bool = True,
                         tol: float = 1e-5) -> SymmetryAnalysis:
    """:func:`symmetry_analysis` of ``center``'s environment in ``atoms``.

    :param moving: the atoms that move (default: all others; in ``"full"``
        mode the centre is added).
    """
    n = len(atoms)
    if moving is None:
        moving = [k for k in range(n) if k != center]
        if mode == "full":
            moving = [center, *moving]
    moving = np.asarray(moving, dtype=int)
    vec = atoms.positions[moving] - atoms.positions[center]
    return symmetry_analysis(vec, atoms.numbers[moving], mode, improper,
                             bool(np.any(atoms.pbc)), tol)


# -------------------------------------------------------------- classification


def is_reflection_invariant(descriptor: Any, atoms: Any, center: int = 0,
                            rtol: float = 1e-8, jitter: float = 0.05) -> bool:
    """Whether the features are unchanged by a mirror image (O(3) rather than SO(3) invariance).

    The test runs on a copy of the environment with every atom but the centre
    moved by a fixed pseudo-random amount (``jitter`` Å): a symmetric
    environment can be its own mirror image (any planar one is achiral), and
    there pseudoscalars vanish, so mirroring it would prove nothing.
    """
    probe = atoms.copy()
    shift = np.random.default_rng(12345).normal(scale=jitter, size=(len(atoms), 3))
    shift[center] = 0.0
    probe.positions = atoms.positions + shift
    mirror = probe.copy()
    mirror.positions = probe.positions * np.array([1.0, 1.0, -1.0])
    if np.any(atoms.pbc):
        mirror.cell = probe.cell[:] * np.array([1.0, 1.0, -1.0])
    a = descriptor.compute(probe, centers=[center], n_threads=1).features
    b = descriptor.compute(mirror, centers=[center], n_threads=1).features
    return bool(np.linalg.norm(a - b) <= rtol * max(np.linalg.norm(a), 1e-300))


@dataclass
class NullDirection:
    """One null direction with its kind and the evidence.

    ``kind`` is ``"symmetry"``, ``"truncation"``, ``"incompleteness"``, or
    ``"unexplained"`` (spurious, but neither a larger basis nor a reference
    was given, or neither responded). ``responses`` maps a descriptor label to
    ``|J u| / ‖J‖`` along the direction (0 = still null).
    """

    kind: str
    vector: np.ndarray
    responses: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vector": self.vector.tolist(),
                "responses": dict(self.responses)}


@dataclass
class Classification:
    """The singular point of one environment: null directions and their kinds."""

    sensitivity: Sensitivity
    symmetry: SymmetryAnalysis
    directions: list[NullDirection]
    too_few_features: bool
    larger_ranks: list[int] = field(default_factory=list)
    reference_rank: int | None = None

    @property
    def counts(self) -> dict[str, int]:
        out = {"symmetry": 0, "incompleteness": 0, "truncation": 0, "unexplained": 0}
        for d in self.directions:
            out[d.kind] += 1
        return out

    @property
    def singular(self) -> bool:
        return self.sensitivity.n_null > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensitivity": self.sensitivity.to_dict(),
            "symmetry": self.symmetry.to_dict(),
            "counts": self.counts,
            "too_few_features": self.too_few_features,
            "larger_ranks": list(self.larger_ranks),
            "reference_rank": self.reference_rank,
            "directions": [d.to_dict() for d in self.directions],
        }

    def summary(self) -> str:
        s = self.sensitivity
        sym = self.symmetry
        group = "infinite (collinear)" if sym.infinite else f"{sym.n_operations} operations"
        lines = [
            f"rank {s.rank} of {s.n_dof} (rtol {s.rtol:g}); point group: {group}, "
            f"{'O(3)' if sym.improper else 'SO(3)'} rank bound {sym.rank_bound}",
            "null directions: " + (", ".join(f"{k} {v}" for k, v in self.counts.items() if v)
                                   or "none"),
        ]
        if self.too_few_features:
            lines.append(f"  fewer features ({s.jacobian.matrix.shape[0]}) than directions "
                         f"({s.n_dof}): truncation is unavoidable")
        return "\n".join(lines)


DescriptorList = Sequence[Any] | Callable[[], Sequence[Any]]


def classify(descriptor: Any, atoms: Any, center: int = 0, *, reference: Any = None,
             larger: DescriptorList | None = None, mode: str = "centered",
             rtol: float = RTOL, improper: bool | None = None,
             symmetry_tol: float = 1e-5) -> Classification:
    """Find the null directions at an environment and say where each comes from.

    :param descriptor: the descriptor under study (any family with gradients).
    :param reference: a descriptor of higher body order (e.g. ``bispectrum``
        for ``soap``): a totally symmetric null direction it responds to is
        *incompleteness*.
    :param larger: descriptors of the same kind with growing basis (a list,
        or a callable returning one; the last is the largest): a direction the
        largest responds to is *truncation*.
    :param improper: allow reflections in the point group; ``None`` decides
        numerically (a mirror image leaves the features unchanged).
    :param rtol: rank tolerance; a direction counts as null for another
        descriptor when ``|J u| ≤ rtol ‖J‖``.
    """
    sens = sensitivity(descriptor, atoms, center, mode=mode, rtol=rtol)
    jac = sens.jacobian
    if improper is None:
        improper = is_reflection_invariant(descriptor, atoms, center)
    sym = symmetry_analysis(jac.vectors, atoms.numbers[jac.atoms], mode, improper,
                            jac.periodic, symmetry_tol)
    null = sens.null_vectors.reshape(sens.n_null, 3 * len(jac.atoms))  # orthonormal rows, ⊥ rigid modes
    directions: list[NullDirection] = []
    unexplained = np.zeros((0, null.shape[1]))
    if sens.n_null:
        w = sym.symmetric_basis
        proj = w.T @ null.T if w.shape[1] else np.zeros((0, sens.n_null))
        if proj.size:
            u, sv, _ = np.linalg.svd(proj, full_matrices=False)
            n_free = int(np.count_nonzero(sv > 0.5))
            unexplained = (w @ u[:, :n_free]).T
        else:
            n_free = 0
        # the forced ones: the null space minus its totally symmetric part
        if n_free:
            rest = null.T - unexplained.T @ (unexplained @ null.T)
            uu, ss, _ = np.linalg.svd(rest, full_matrices=False)
            forced = uu[:, ss > 0.5].T
        else:
            forced = null
        for vec in forced:
            directions.append(NullDirection("symmetry", vec.reshape(-1, 3)))
    larger_list = list(larger() if callable(larger) else (larger or []))
    larger_jacs = [jacobian(d, atoms, center, mode=mode, moving=jac.atoms) for d in larger_list]
    ref_jac = (jacobian(reference, atoms, center, mode=mode, moving=jac.atoms)
               if reference is not None else None)
    for vec in unexplained:
        responses: dict[str, float] = {}
        for k, lj in enumerate(larger_jacs):
            responses[f"larger[{k}]"] = lj.response(vec)
        if ref_jac is not None:
            responses["reference"] = ref_jac.response(vec)
        if larger_jacs and responses[f"larger[{len(larger_jacs) - 1}]"] > rtol:
            kind = "truncation"
        elif ref_jac is not None and responses["reference"] > rtol:
            kind = "incompleteness"
        else:
            kind = "unexplained"
        directions.append(NullDirection(kind, vec.reshape(-1, 3), responses))
    larger_ranks = [sensitivity(None, jac=lj, rtol=rtol).rank for lj in larger_jacs]
    ref_rank = sensitivity(None, jac=ref_jac, rtol=rtol).rank if ref_jac is not None else None
    too_few = jac.matrix.shape[0] < sens.n_dof
    return Classification(sens, sym, directions, too_few, larger_ranks, ref_rank)

