"""Checks of the criteria of a good descriptor, each usable on its own.

Every check takes any :class:`atomdesc.Descriptor` and returns a JSON-able
dict; structures are generated with the descriptor's own species.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ase import Atoms

from . import environments as env


def relative_difference(a: Any, b: Any) -> float:
    """``|a - b| / |a|`` (Frobenius norms; SCIENCE.md §6 "rel")."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na = np.linalg.norm(a)
    return float(np.linalg.norm(a - b) / na) if na > 0 else float(np.linalg.norm(b))


def species_roles(descriptor: Any) -> dict[str, str]:
    """Map the roles of the test environments (C centre, H neighbours, O axial atom; B for the
    single-species B8 clusters) to the descriptor's species."""
    sp = list(descriptor.species)
    return {"C": sp[min(1, len(sp) - 1)], "H": sp[0], "O": sp[min(2, len(sp) - 1)], "B": sp[0]}


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q


def random_structure(species: list[str], n_atoms: int, cell: float, pbc: Any = True,
                     seed: int = 0, min_dist: float = 1.0) -> Atoms:
    """Random positions in a cubic cell, no two atoms (or images) closer than ``min_dist``."""
    rng = np.random.default_rng(seed)
    cellm = np.eye(3) * cell
    atoms = Atoms(cell=cellm, pbc=pbc)
    for _ in range(100 * n_atoms):
        if len(atoms) == n_atoms:
            break
        trial = atoms + Atoms(species[len(atoms) % len(species)], positions=[rng.random(3) * cell],
                              cell=cellm, pbc=pbc)
        if len(trial) == 1 or trial.get_distances(len(trial) - 1, range(len(trial) - 1),
                                                  mic=bool(np.any(pbc))).min() > min_dist:
            atoms = trial
    return atoms


def sample_structures(descriptor: Any, seed: int = 0) -> dict[str, Atoms]:
    """Molecular, periodic and mixed structures using all of the descriptor's species."""
    sp = list(descriptor.species)
    roles = species_roles(descriptor)
    mol = env.random_ch4(seed, center=roles["C"], neighbour=roles["H"])
    return {
        "molecule": mol,
        "periodic": random_structure(sp, 16, 5.5, True, seed, 1.1),
        "slab": random_structure(sp, 10, 5.0, [True, True, False], seed + 1, 1.1),
        "small_cell": random_structure(sp[:1], 2, 2.6, True, seed + 2, 1.1),
    }


# ----------------------------------------------------------------- invariance


def invariance(descriptor: Any, atoms: Atoms | None = None, seed: int = 0) -> dict[str, Any]:
    """Relative change of all features under rotation, reflection, translation and permutation.

    ``reflection_odd`` is the same for ``ξ(mirror) = -ξ`` (pseudoscalars);
    a family is O(3)-invariant if ``reflection`` is ~0, SO(3)-only otherwise.
    Every structure kind of :func:`sample_structures` is used unless ``atoms`` is given.
    """
    rng = np.random.default_rng(seed)
    frames = {"given": atoms} if atoms is not None else sample_structures(descriptor, seed)
    worst = {"rotation": 0.0, "reflection": 0.0, "translation": 0.0, "permutation": 0.0}
    odd = 0.0
    for frame in frames.values():
        base = descriptor.compute(frame).features
        rot = random_rotation(rng)
        for key, mat in (("rotation", rot), ("reflection", rot @ np.diag([1.0, 1.0, -1.0]))):
            moved = frame.copy()
            moved.positions = frame.positions @ mat.T
            if np.any(frame.pbc):
                moved.cell = frame.cell[:] @ mat.T
            feats = descriptor.compute(moved).features
            worst[key] = max(worst[key], relative_difference(base, feats))
            if key == "reflection":
                odd = max(odd, float(np.linalg.norm(base + feats) / max(np.linalg.norm(base), 1e-300)))
        shifted = frame.copy()
        shifted.positions += rng.normal(size=3)
        if np.any(frame.pbc):
            shifted.wrap()
        worst["translation"] = max(worst["translation"],
                                   relative_difference(base, descriptor.compute(shifted).features))
        perm = rng.permutation(len(frame))
        permuted = frame[perm]
        worst["permutation"] = max(worst["permutation"],
                                   relative_difference(base[perm], descriptor.compute(permuted).features))
    tol = 1e-10
    return {
        **worst,
        "reflection_odd": odd,
        "tolerance": tol,
        "o3_invariant": bool(max(worst.values()) <= tol),
        "so3_invariant": bool(max(worst["rotation"], worst["translation"], worst["permutation"])
                              <= tol),
        "structures": list(frames),
    }


# ------------------------------------------------------------------ smoothness


def cutoff_radius(descriptor: Any) -> float | None:
    """The cutoff radius of a descriptor, from ``r_cut`` or common hyper-parameter names."""
    for name in ("r_cut", "cutoff", "rcut", "interaction_cutoff"):
        value = getattr(descriptor, name, None)
        if isinstance(value, (int, float)):
            return float(value)
        value = descriptor.hypers.get(name)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def smoothness(descriptor: Any, r_cut: float | None = None, eps: float = 1e-5,
               n_points: int = 61) -> dict[str, Any]:
    """Value and first derivative as a neighbour crosses the cutoff (SCIENCE.md T5).

    A centre with a fixed neighbour at 1 Å and a second neighbour dragged
    radially from ``0.6 r_cut`` to ``1.05 r_cut``. ``value_jump`` is
    ``|ξ(r_c - ε) - ξ(r_c + ε)| / |ξ|``, ``derivative_at_cutoff`` is
    ``|dξ/dr(r_c - ε)|`` relative to the largest ``|dξ/dr|`` of the scan; both
    go to zero for a smooth cutoff (continuous value and first derivative).
    """
    r_cut = r_cut if r_cut is not None else cutoff_radius(descriptor)
    if r_cut is None:
        return {"skipped": "the cutoff radius is unknown (pass r_cut)"}
    roles = species_roles(descriptor)
    direction = np.array([np.cos(1.9), np.sin(1.9), 0.3])
    direction /= np.linalg.norm(direction)
    worst = {"value_jump": 0.0, "derivative_at_cutoff": 0.0}
    curves = {}
    for moving_species in descriptor.species:
        def frame(r: float, sp: str = moving_species) -> Atoms:
            return Atoms([roles["C"], roles["H"], sp],
                         positions=[[0, 0, 0], [1.0, 0, 0], r * direction])

        def values(r: float) -> tuple[np.ndarray, np.ndarray]:
            res = descriptor.compute(frame(r), centers=[0], gradients=True, n_threads=1)
            dense = res.dense_gradients()[0, 2]  # (3, n_features) of the moving atom
            return res.features[0], direction @ dense

        rs = np.linspace(0.6 * r_cut, 1.05 * r_cut, n_points)
        vals, ders = zip(*(values(r) for r in rs))
        vals, ders = np.array(vals), np.array(ders)
        inside, d_inside = values(r_cut - eps)
        outside, _ = values(r_cut + eps)
        scale = max(np.linalg.norm(outside), 1e-300)
        dscale = max(np.abs(ders).max(), 1e-300)
        jump = float(np.linalg.norm(inside - outside) / scale)
        deriv = float(np.abs(d_inside).max() / dscale)
        worst["value_jump"] = max(worst["value_jump"], jump)
        worst["derivative_at_cutoff"] = max(worst["derivative_at_cutoff"], deriv)
        curves[moving_species] = {
            "r": rs.tolist(),
            "value_change": (np.linalg.norm(vals - outside, axis=1) / scale).tolist(),
            "derivative": (np.abs(ders).max(axis=1) / dscale).tolist(),
        }
    return {
        "r_cut": r_cut, "eps": eps, **worst,
        "continuous": bool(worst["value_jump"] <= 1e-6),
        "differentiable": bool(worst["derivative_at_cutoff"] <= 1e-3),
        "curves": curves,
    }


def gradient_check(descriptor: Any, atoms: Atoms | None = None, h: float = 1e-3) -> dict[str, Any]:
    """Analytic position gradients against 4th-order central differences (SCIENCE.md T18)."""
    if atoms is None:
        roles = species_roles(descriptor)
        atoms = env.random_ch4(3, center=roles["C"], neighbour=roles["H"])
    analytic = descriptor.compute(atoms, gradients=True).dense_gradients()
    fd = np.zeros_like(analytic)
    for a in range(len(atoms)):
        for x in range(3):
            acc = 0.0
            for step, weight in ((2, -1.0), (1, 8.0), (-1, -8.0), (-2, 1.0)):
                moved = atoms.copy()
                moved.positions[a, x] += step * h
                acc = acc + weight * descriptor.compute(moved, n_threads=1).features
            fd[:, a, x] = acc / (12 * h)
    err = float(np.abs(analytic - fd).max() / max(np.abs(fd).max(), 1e-300))
    return {"relative_error": err, "h": h, "passed": bool(err <= 1e-6)}


# ------------------------------------------------------------------ uniqueness


def uniqueness(descriptor: Any, n_random: int = 3, tol: float = 1e-10) -> dict[str, Any]:
    """Feature differences of the known degenerate pairs (SCIENCE.md T10, T11).

    X± pairs are equal for every centred ν ≤ 2 descriptor, B± pairs for ν ≤ 3.
    A descriptor that separates a pair (``rel > tol``) resolves that
    degeneracy. Bundled pairs and ``n_random`` generated ones of each kind.
    """
    roles = species_roles(descriptor)
    out: dict[str, Any] = {"tolerance": tol}
    for kind in ("3body", "4body"):
        pairs = [(name, env.relabel(p, roles), env.relabel(m, roles))
                 for name, p, m in env.degenerate_pairs(kind)]
        gen = env.xpm_random if kind == "3body" else env.bpm_random
        for k in range(n_random):
            if kind == "3body":
                p, m = gen(100 + k, center=roles["C"], neighbour=roles["H"])
            else:
                p, m = gen(100 + k, center=roles["C"], ring=roles["H"], axial=roles["O"])
            pairs.append((f"generated_{k}", p, m))
        rel = {}
        for name, plus, minus in pairs:
            a = descriptor.compute(plus, centers=[0], n_threads=1).features
            b = descriptor.compute(minus, centers=[0], n_threads=1).features
            rel[name] = relative_difference(a, b)
        values = np.array(list(rel.values()))
        out[kind] = {
            "relative_difference": rel,
            "min": float(values.min()),
            "max": float(values.max()),
            "distinguished": bool(values.min() > tol),
            "degenerate": bool(values.max() <= tol),
        }
    return out


# --------------------------------------------------------------- cost and size


def cost(descriptor: Any, atoms: Atoms | None = None, repeat: int = 3) -> dict[str, Any]:
    """Best-of-``repeat`` time per atom for features, and with gradients; features per atom."""
    if atoms is None:
        atoms = random_structure(list(descriptor.species), 64, 9.0, True, 7, 1.1)
    out: dict[str, Any] = {"n_atoms": len(atoms), "n_features": int(descriptor.n_features)}
    for key, grads in (("features", False), ("gradients", True)):
        best = np.inf
        for _ in range(repeat):
            t = time.perf_counter()
            res = descriptor.compute(atoms, gradients=grads)
            best = min(best, time.perf_counter() - t)
        out[f"{key}_us_per_atom"] = 1e6 * best / len(atoms)
        if grads:
            out["gradient_pairs_per_atom"] = len(res.gradient_pairs) / len(atoms)
    return out


def fixed_size(descriptor: Any) -> dict[str, Any]:
    """Same number of finite features for an isolated atom, a dimer, a molecule, a crystal."""
    roles = species_roles(descriptor)
    frames = {
        "isolated_atom": Atoms([roles["C"]], positions=[[0, 0, 0]]),
        "dimer": Atoms([roles["C"], roles["H"]], positions=[[0, 0, 0], [0, 0, 1.1]]),
        **sample_structures(descriptor),
    }
    shapes, finite, errors = {}, True, {}
    for name, frame in frames.items():
        try:
            f = descriptor.compute(frame).features
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        shapes[name] = int(f.shape[1])
        finite &= bool(np.all(np.isfinite(f)))
    ok = not errors and finite and set(shapes.values()) == {int(descriptor.n_features)}
    return {"n_features": int(descriptor.n_features), "per_structure": shapes,
            "finite": finite, "errors": errors, "fixed": bool(ok)}


def generality(descriptor: Any) -> dict[str, Any]:
    """Runs (features, gradients, strain gradients where supported) on molecular, periodic,
    slab and small-cell structures with all of the descriptor's species."""
    out: dict[str, Any] = {"species": list(descriptor.species)}
    frames = sample_structures(descriptor)
    for name, frame in frames.items():
        try:
            res = descriptor.compute(
                frame, gradients=getattr(descriptor, "supports_gradients", True),
                strain_gradients=bool(np.all(frame.pbc))
                and getattr(descriptor, "supports_strain_gradients", False))
            out[name] = "ok" if np.all(np.isfinite(res.features)) else "non-finite features"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            out[name] = f"{type(exc).__name__}: {exc}"
    out["all_ok"] = all(out[k] == "ok" for k in frames)
    return out
