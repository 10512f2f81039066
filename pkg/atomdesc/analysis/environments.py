"""Test environments of the sensitivity analysis (SCIENCE.md §4-5) and the bundled structures.

Every generator returns :class:`ase.Atoms` (non-periodic, Å) with the centre
at the origin as atom 0; the species are arguments, so any family's species
list can be served.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import numpy as np
from ase import Atoms

#: PRL 2020 X± manifold: fixed H1-H3 (SCIENCE.md §5.1); H4 moves on the 1.09 Å sphere.
XPM_PRL = {"p": -0.41712494, "q": 1.00702869, "a": 0.76368590, "b": 0.55485029, "c": 0.545}

#: Bundled structure files (atom 0 is the centre).
DATA_FILES = {
    "singular": "singular_environments.xyz",
    "3body": "degenerate_3body_pairs.xyz",
    "4body": "degenerate_4body_pairs.xyz",
}


def _env(center: str, neighbours: str | list[str], vectors: Any) -> Atoms:
    vectors = np.asarray(vectors, dtype=float).reshape(-1, 3)
    if isinstance(neighbours, str):
        neighbours = [neighbours] * len(vectors)
    return Atoms([center, *neighbours], positions=np.vstack([np.zeros(3), vectors]))


def tetrahedron(r: float = 1.09, center: str = "C", neighbour: str = "H") -> Atoms:
    """Regular tetrahedron (T_d CH4): Jacobian rank 1 for any invariant descriptor."""
    v = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    return _env(center, neighbour, r * v)


def planar(n: int = 4, seed: int = 0, r: tuple[float, float] = (0.9, 1.4),
           center: str = "C", neighbour: str = "H") -> Atoms:
    """Centre and ``n`` neighbours in the plane z = 0 at generic in-plane positions.

    O(3)-invariant features are blind to the out-of-plane displacements to
    first order: rank 3n - 3 - (n - 2) = 2n - 1 (7 of 9 for n = 4).
    """
    rng = np.random.default_rng(seed)
    while True:
        phi = np.sort(rng.uniform(0, 2 * np.pi, n))
        gaps = np.diff(np.append(phi, phi[0] + 2 * np.pi))
        if gaps.min() > 0.6:
            break
    d = rng.uniform(*r, n)
    return _env(center, neighbour, np.stack([d * np.cos(phi), d * np.sin(phi), 0 * d], 1))


def collinear(r1: float = 1.1, r2: float = 1.3, center: str = "C", neighbour: str = "H") -> Atoms:
    """Centre between two neighbours on the z axis: 4 non-trivial directions, rank 2."""
    return _env(center, neighbour, [[0, 0, r1], [0, 0, -r2]])


def bent(r1: float = 1.1, r2: float = 1.3, angle: float = 2.0, center: str = "C",
         neighbour: str = "H") -> Atoms:
    """Two neighbours at ``angle`` (rad): 3 non-trivial directions, full rank 3."""
    return _env(center, neighbour, [[0, 0, r1], [r2 * np.sin(angle), 0, r2 * np.cos(angle)]])


def random_ch4(seed: int = 0, r: tuple[float, float] = (0.9, 1.4), min_hh: float = 0.8,
               center: str = "C", neighbour: str = "H", n: int = 4) -> Atoms:
    """A CH4-like environment with random directions and C-H distances (generic: no symmetry)."""
    rng = np.random.default_rng(seed)
    while True:
        u = rng.normal(size=(n, 3))
        u /= np.linalg.norm(u, axis=1)[:, None]
        v = u * rng.uniform(*r, n)[:, None]
        dist = np.linalg.norm(v[:, None] - v[None], axis=-1)[np.triu_indices(n, 1)]
        if dist.min() > min_hh:
            return _env(center, neighbour, v)


# ----------------------------------------------------------------- X± family


def xpm_pair(p: float, q: float, a: float, b: float, c: float, x: float, y: float,
             center: str = "C", neighbour: str = "H") -> tuple[Atoms, Atoms]:
    """The 3-body-degenerate pair X⁺/X⁻ (SCIENCE.md §5.1).

    H1 = (p, 0, q), H2 = (a, -b, -c), H3 = (a, b, c), H4± = (x, ±y, 0): every
    centred ν ≤ 2 descriptor (power spectrum, ACSF, radial spectrum) is equal
    for the two members, which are distinct when q·c ≠ 0 and b·y ≠ 0.
    """
    base = [[p, 0, q], [a, -b, -c], [a, b, c]]
    plus = _env(center, neighbour, base + [[x, y, 0]])
    minus = _env(center, neighbour, base + [[x, -y, 0]])
    return plus, minus


def xpm_random(seed: int = 0, **species: str) -> tuple[Atoms, Atoms]:
    """A random member of the X± family (distances kept in a CH4-like range)."""
    rng = np.random.default_rng(seed)
    while True:
        p, a, x = rng.uniform(-1.2, 1.2, 3)
        q, b, c, y = rng.uniform(0.3, 1.3, 4)
        plus, minus = xpm_pair(p, q, a, b, c, x, y, **species)
        d = plus.get_all_distances()
        if d[0, 1:].min() > 0.7 and d[0, 1:].max() < 1.8 and d[1:, 1:][np.triu_indices(4, 1)].min() > 0.8:
            return plus, minus


def xpm_h4(theta: float, phi: float, r: float = 1.09, params: dict[str, float] | None = None,
           center: str = "C", neighbour: str = "H") -> Atoms:
    """The PRL X± manifold: H1-H3 fixed, H4 at polar angle ``theta``, azimuth ``phi`` on a sphere.

    The two branch points (where X⁺ = X⁻ and ν ≤ 2 features lose rank) are
    H4 = (±r, 0, 0), i.e. ``theta = π/2`` and ``phi`` = 0 or π.
    """
    p = XPM_PRL if params is None else params
    h4 = r * np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    base = [[p["p"], 0, p["q"]], [p["a"], -p["b"], -p["c"]], [p["a"], p["b"], p["c"]]]
    return _env(center, neighbour, base + [h4])


def xpm_branch_point(sign: int = 1, r: float = 1.09, **kw: Any) -> Atoms:
    """The X± branch point H4 = (sign·r, 0, 0): one extra null direction (H4 along y) for ν ≤ 2."""
    return xpm_h4(np.pi / 2, 0.0 if sign > 0 else np.pi, r=r, **kw)


# ----------------------------------------------------------------- B± family


def bpm_pair(r: float, phis: Any, psi: float, z1: float, z2: float, center: str = "C",
             ring: str = "H", axial: str = "O") -> tuple[Atoms, Atoms]:
    """The 4-body (bispectrum)-degenerate pair B⁺/B⁻ (SCIENCE.md §5.2).

    Two rings of ``len(phis)`` atoms at z = ±z1 (the second rotated by ψ) and
    one axial atom at ±z2: ν ≤ 3 centred descriptors are equal for the pair.
    """
    phis = np.asarray(phis, dtype=float)
    l1 = np.stack([r * np.cos(phis), r * np.sin(phis), np.full_like(phis, z1)], 1)
    l2 = np.stack([r * np.cos(phis + psi), r * np.sin(phis + psi), np.full_like(phis, -z1)], 1)
    ring_atoms = [ring] * (2 * len(phis))
    plus = _env(center, ring_atoms + [axial], np.vstack([l1, l2, [[0, 0, z2]]]))
    minus = _env(center, ring_atoms + [axial], np.vstack([l1, l2, [[0, 0, -z2]]]))
    return plus, minus


def bpm_random(seed: int = 0, filtered: bool = True, **species: str) -> tuple[Atoms, Atoms]:
    """A random B8 pair with Nigam et al.'s sampling (and, by default, their distance filter)."""
    rng = np.random.default_rng(seed)
    while True:
        r, z1 = rng.uniform(0.5, 2, 2)
        z2 = rng.uniform(1.5, 1.8)
        psi = rng.uniform(0, np.pi)
        f1, f2 = rng.uniform(np.pi / 6, np.pi, 2)
        plus, minus = bpm_pair(r, [0.0, f1, f1 + f2], psi, z1, z2, **species)
        if not filtered:
            return plus, minus
        d = plus.get_all_distances()
        if (d[0, 1:].min() > 1.5 and d[0, 1:].max() < 1.8
                and d[1:, 1:][np.triu_indices(len(plus) - 1, 1)].min() > 1.2):
            return plus, minus


# ----------------------------------------------------------------- bundled data


def data_path(name: str) -> Any:
    """Path of a bundled structure file: ``"singular"``, ``"3body"`` or ``"4body"``."""
    if name not in DATA_FILES:
        raise ValueError(f"unknown bundled structure set {name!r}; available: {list(DATA_FILES)}")
    return files("atomdesc.analysis").joinpath("data", DATA_FILES[name])


def singular_environments() -> dict[str, Atoms]:
    """The bundled singular environments by name (CH4_Td, planar4, collinear2, the two X±
    branch points, random_CH4), with their expected ranks in ``atoms.info``."""
    import ase.io

    with data_path("singular").open() as fh:
        frames = ase.io.read(fh, index=":", format="extxyz")
    return {f.info["name"]: f for f in frames}


def degenerate_pairs(kind: str = "3body") -> list[tuple[str, Atoms, Atoms]]:
    """The bundled degenerate pairs as ``(name, plus, minus)``: ``"3body"`` (X±) or ``"4body"`` (B±)."""
    import ase.io

    with data_path(kind).open() as fh:
        frames = ase.io.read(fh, index=":", format="extxyz")
    return [(frames[i].info["pair"], frames[i], frames[i + 1]) for i in range(0, len(frames), 2)]


def relabel(atoms: Atoms, mapping: dict[str, str]) -> Atoms:
    """A copy with species renamed (e.g. to fit a descriptor's species list)."""
    out = atoms.copy()
    out.set_chemical_symbols([mapping.get(s, s) for s in atoms.get_chemical_symbols()])
    return out
