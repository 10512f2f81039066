"""Benchmark structures, shared by every descriptor family.

All structures are built from fixed seeds, so every run (and every machine)
times exactly the same atoms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule


@dataclass(frozen=True)
class BenchSystem:
    """A named benchmark input: one structure or a list of them (a dataset)."""

    key: str
    title: str
    structures: list[Atoms]

    @property
    def is_list(self) -> bool:
        return len(self.structures) > 1

    @property
    def periodic(self) -> bool:
        return all(a.pbc.any() for a in self.structures)

    @property
    def n_atoms(self) -> int:
        return sum(len(a) for a in self.structures)

    @property
    def species(self) -> list[str]:
        return sorted({s for a in self.structures for s in a.get_chemical_symbols()})

    @property
    def inputs(self) -> Atoms | list[Atoms]:
        """What the descriptors are called with: the Atoms itself, or the list."""
        return self.structures if self.is_list else self.structures[0]


def silicon_512(seed: int = 20240521) -> BenchSystem:
    """Diamond Si, 4x4x4 cubic cells, every atom displaced (σ = 0.05 Å)."""
    atoms = bulk("Si", "diamond", a=5.431, cubic=True) * (4, 4, 4)
    atoms.rattle(0.05, seed=seed)
    return BenchSystem("si512", "bulk Si, 512 atoms, periodic", [atoms])


def cuau_864(seed: int = 20240522) -> BenchSystem:
    """Random fcc CuAu (50/50), 6x6x6 cubic cells, a = 3.85 Å (Vegard), rattled."""
    atoms = bulk("Cu", "fcc", a=3.85, cubic=True) * (6, 6, 6)
    rng = np.random.default_rng(seed)
    numbers = np.array([29, 79] * (len(atoms) // 2))
    atoms.numbers = rng.permutation(numbers)
    # A small displacement so that no angle is exactly degenerate, as in a real alloy.
    atoms.rattle(0.05, seed=seed + 1)
    return BenchSystem("cuau864", "random CuAu, 864 atoms, periodic", [atoms])


def water_192(seed: int = 20240523, density: float = 1.0, min_distance: float = 1.6) -> BenchSystem:
    """64 randomly oriented H2O in a cubic box at ``density`` g/cm³.

    Molecules sit near the sites of a 4x4x4 grid (jitter ±0.3 Å); each one is
    turned until no atom is closer than ``min_distance`` Å to any atom of an
    already placed molecule (minimum image), so the box has no overlaps.
    """
    n_side = 4
    n_molecules = n_side**3
    # 18.015 g/mol / N_A at 1 g/cm³ is 29.915 Å³ per molecule.
    length = (n_molecules * 18.015 / 0.602214 / density) ** (1 / 3)
    template = molecule("H2O")
    template.positions -= template.positions[0]  # O at the origin
    rng = np.random.default_rng(seed)
    spacing = length / n_side
    placed = np.zeros((0, 3))
    for site in np.ndindex(n_side, n_side, n_side):
        centre = (np.array(site) + 0.5) * spacing + rng.uniform(-0.3, 0.3, 3)
        for _ in range(1000):
            trial = centre + template.positions @ _random_rotation(rng).T
            diff = trial[:, None, :] - placed[None, :, :]
            diff -= length * np.round(diff / length)
            if len(placed) == 0 or np.sqrt((diff**2).sum(-1)).min() >= min_distance:
                break
        else:
            raise RuntimeError("could not place a water molecule without overlap")
        placed = np.vstack([placed, trial])
    atoms = Atoms("OH2" * n_molecules, positions=placed, cell=[length] * 3, pbc=True)
    atoms.wrap()
    return BenchSystem("water192", f"water box, 64 H2O ({length:.2f} Å)³, periodic", [atoms])


def silicon_cells(seed: int = 20261206, n_cells: int = 64) -> BenchSystem:
    """64 cubic 8-atom Si cells (512 atoms, as si512), each strained by up to ±3 % and
    rattled (σ = 0.05 Å): a dataset of small periodic structures, one call each, where
    the fixed cost of a call (validation, neighbour list set-up) shows."""
    rng = np.random.default_rng(seed)
    cells = []
    for k in range(n_cells):
        atoms = bulk("Si", "diamond", a=5.431, cubic=True)
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.rattle(0.05, seed=seed + k)
        cells.append(atoms)
    return BenchSystem("si8x64", f"{n_cells} Si cells of 8 atoms (512 atoms), periodic", cells)


def g2_molecules() -> BenchSystem:
    """The 148 molecules of ase.collections.g2, non-periodic, as one list.

    The set's 14 isolated atoms are left out: they are not molecules and have
    no neighbours (their features are all zero).
    """
    from ase.collections import g2

    structures = [atoms for atoms in g2 if len(atoms) > 1]
    return BenchSystem("g2", f"ASE g2 set, {len(structures)} molecules, non-periodic", structures)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q


#: Every benchmark system by key, in the order the reports list them.
SYSTEMS: dict[str, Callable[[], BenchSystem]] = {
    "si512": silicon_512,
    "water192": water_192,
    "cuau864": cuau_864,
    "g2": g2_molecules,
    "si8x64": silicon_cells,
}

#: The systems a run covers unless told otherwise (those the performance goals name).
DEFAULT_SYSTEMS = ("si512", "water192", "cuau864", "g2")
