"""Write DScribe's ACSF values for a fixed set of structures to ``tests/data/dscribe_acsf.json``.

Run once, in an environment that has DScribe (never a dependency of atomdesc)::

    /opt/refvenv/bin/python tests/reference/generate_dscribe_acsf.py

Everything is deterministic (fixed seeds), so rerunning with the same DScribe
version rewrites the same numbers. ``tests/test_acsf_dscribe.py`` reads the file.

Layout of the file (JSON; Python writes floats in their shortest exact form,
so the numbers read back bit for bit):

* ``dscribe_version``, ``ase_version``: the versions that made the numbers.
* ``layout``: where DScribe puts each species and species pair (see
  :func:`probe_layout`), found by probing DScribe, not by reading its code.
* ``cases``: one object per line with ``name``, ``positions`` (n, 3), ``numbers``,
  ``cell`` (3, 3), ``pbc``, ``periodic`` (what DScribe was given), ``hypers``
  (species, r_cut, g2..g5 params), ``centers`` (null for all atoms) and
  ``features`` (n_centers, n_features) as DScribe returns them.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list
from dscribe.descriptors import ACSF

OUTPUT = Path(__file__).resolve().parents[1] / "data" / "dscribe_acsf.json"

# Parameter sets: several of each function, zeta integer (1, 2, 4, 16) and
# non-integer (2.5), lambda of both signs.
MOLECULE_HYPERS = dict(
    species=["H", "C", "O"],
    r_cut=6.0,
    g2_params=[[0.01, 0.0], [0.5, 1.0], [1.0, 2.5], [4.0, 1.2]],
    g3_params=[0.5, 1.7, 3.1],
    g4_params=[[0.005, 1, 1], [0.005, 1, -1], [0.02, 2, 1], [0.02, 4, -1],
               [0.01, 16, 1], [0.03, 2.5, -1]],
    g5_params=[[0.005, 1, 1], [0.01, 2, -1], [0.02, 4, 1], [0.005, 16, -1],
               [0.01, 2.5, 1], [0.04, 16, 1]],
)
PERIODIC_PARAMS = dict(
    g2_params=[[0.05, 0.0], [1.0, 1.5], [2.0, 3.0]],
    g3_params=[0.8, 2.3],
    g4_params=[[0.01, 1, 1], [0.02, 2, -1], [0.005, 4, 1], [0.01, 16, -1], [0.05, 2.5, 1]],
    g5_params=[[0.01, 1, -1], [0.02, 2, 1], [0.005, 4, -1], [0.01, 16, 1], [0.05, 2.5, -1]],
)


def random_structure(seed, symbols, cell, pbc=True, min_dist=0.8):
    """Random positions in ``cell``; every pair (periodic images included) > min_dist apart."""
    rng = np.random.default_rng(seed)
    cell = np.asarray(cell, dtype=float)
    atoms = Atoms(cell=cell, pbc=pbc)
    for symbol in symbols:
        while True:
            trial = atoms + Atoms(symbol, positions=[rng.random(3) @ cell], cell=cell, pbc=pbc)
            # neighbor_list sees every image, including an atom's own
            if len(neighbor_list("i", trial, min_dist)) == 0:
                atoms = trial
                break
    return atoms


def structures():
    """(name, atoms, hypers, centers) for every case."""
    cases = []

    # Molecules with all of G1..G5: the bulk of the value checks.
    for name in ["CH4", "H2O", "CH3CH2OH"]:
        cases.append((f"molecule_{name}", molecule(name), MOLECULE_HYPERS, None))
    # Benzene has exactly collinear triplets (cos θ = ±1). DScribe does not clamp
    # cos θ, which then comes out as ±(1 + 1e-16), and pow() of the slightly
    # negative 1 + λ cos θ is NaN for a non-integer zeta. So: all parameters on a
    # slightly rattled copy, and the exact geometry with integer zetas only.
    benzene = molecule("C6H6")
    benzene.rattle(0.01, seed=1)
    cases.append(("molecule_C6H6_rattled", benzene, MOLECULE_HYPERS, None))
    integer_zeta = dict(
        MOLECULE_HYPERS,
        g4_params=[p for p in MOLECULE_HYPERS["g4_params"] if float(p[1]).is_integer()],
        g5_params=[p for p in MOLECULE_HYPERS["g5_params"] if float(p[1]).is_integer()],
    )
    cases.append(("molecule_C6H6_collinear", molecule("C6H6"), integer_zeta, None))
    # A subset of centres, not in index order: rows must follow `centers`.
    cases.append(("molecule_CH3CH2OH_centers", molecule("CH3CH2OH"), MOLECULE_HYPERS, [8, 2, 0]))

    # Periodic triclinic cell, two species.
    cell = [[4.8, 0.0, 0.0], [1.5, 4.4, 0.0], [-0.9, 1.1, 5.0]]
    atoms = random_structure(11, ["C", "O"] * 5, cell)
    cases.append(("triclinic_CO", atoms, dict(species=["C", "O"], r_cut=5.0, **PERIODIC_PARAMS),
                  None))

    # A 2-atom cell (perpendicular heights 2.5 Å) with r_cut = 6 Å: many images of
    # every atom, including each atom's own.
    atoms = bulk("SiC", "zincblende", a=4.36)
    atoms.rattle(0.08, seed=7)
    cases.append(("small_cell_SiC", atoms, dict(species=["C", "Si"], r_cut=6.0, **PERIODIC_PARAMS),
                  None))

    # Three species in a periodic cell: every species pair, incl. the ordering of pairs.
    cell = [[6.0, 0.0, 0.0], [0.8, 5.5, 0.0], [0.4, -0.6, 6.2]]
    atoms = random_structure(23, ["H", "O", "Si", "H", "O", "H"] * 3, cell)
    hosi = dict(species=["H", "O", "Si"], r_cut=4.5, **PERIODIC_PARAMS)
    cases.append(("random_HOSi", atoms, hosi, None))
    cases.append(("random_HOSi_centers", atoms, hosi, [11, 0, 5]))

    # A slab: periodic along a and b only.
    cell = [[4.5, 0.0, 0.0], [0.8, 4.2, 0.0], [0.0, 0.0, 9.0]]
    atoms = random_structure(5, ["H", "O"] * 5, cell, pbc=[True, True, False])
    cases.append(("slab_HO", atoms, dict(species=["H", "O"], r_cut=5.0, **PERIODIC_PARAMS), None))

    # Right-angle triplet (SCIENCE.md 2.2): R_jk = 2*sqrt(2) > r_c, so G4 = 0 but G5 != 0.
    atoms = Atoms("H3", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0]])
    cases.append(("right_angle_triplet", atoms,
                  dict(species=["H"], r_cut=2.8, g4_params=[[1, 1, 1]], g5_params=[[1, 1, 1]]),
                  None))
    return cases


def dscribe_features(atoms, hypers, centers):
    periodic = bool(atoms.pbc.any())
    desc = ACSF(periodic=periodic, **hypers)
    out = desc.create(atoms, centers=centers)
    assert out.shape[1] == desc.get_number_of_features()
    return np.atleast_2d(out)


def probe_layout():
    """Which column DScribe uses for each species (G1) and species pair (G5).

    Three species, one G5 function: a centre with two neighbours of species
    (a, b) has exactly one non-zero G5 column, the one of the pair {a, b}.
    """
    species = ["H", "C", "O"]
    desc = ACSF(species=species, r_cut=4.0, g5_params=[[0.1, 1, 1]])
    n_species = len(species)
    g1, g5 = {}, {}
    for a in species:
        centre_and_one = Atoms(["H", a], positions=[[0, 0, 0], [1.5, 0, 0]])
        row = desc.create(centre_and_one, centers=[0])[0]
        (g1[a],) = np.flatnonzero(row)
        for b in species:
            triplet = Atoms(["H", a, b], positions=[[0, 0, 0], [1.5, 0, 0], [0, 1.7, 0]])
            row = desc.create(triplet, centers=[0])[0, n_species:]
            (column,) = np.flatnonzero(row)
            g5[(a, b)] = n_species + column
    assert all(g5[(a, b)] == g5[(b, a)] for a, b in g5)  # unordered pairs
    pairs = sorted({tuple(sorted(p, key=species.index)) for p in g5}, key=lambda p: g5[p])
    return {
        "species": species,
        "g1_species": sorted(species, key=g1.get),
        "g5_pairs": [f"{a}-{b}" for a, b in pairs],
    }


def main():
    cases = []
    for name, atoms, hypers, centers in structures():
        if atoms.pbc.any():
            # DScribe adds ceil(r_cut / height) image cells per axis, which is
            # only enough when the atoms are inside the cell.
            atoms.wrap()
        features = dscribe_features(atoms, hypers, centers)
        if not np.isfinite(features).all():
            raise RuntimeError(f"DScribe returned NaN or inf for {name}")
        cases.append({
            "name": name,
            "positions": atoms.positions.tolist(),
            "numbers": atoms.numbers.tolist(),
            "cell": atoms.cell[:].tolist(),
            "pbc": atoms.pbc.tolist(),
            "periodic": bool(atoms.pbc.any()),
            "hypers": hypers,
            "centers": centers,
            "features": features.tolist(),
        })
        print(f"{name:28s} {len(atoms):3d} atoms  features {features.shape}")
    layout = probe_layout()
    print("G5 pair order:", layout["g5_pairs"])

    data = {"dscribe_version": version("dscribe"), "ase_version": version("ase"),
            "layout": layout, "cases": cases}
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    write_json(OUTPUT, data)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1024:.0f} kB)")


def write_json(path, data):
    """``data`` as JSON with one case per line: readable, and diffs stay small."""

    def compact(value):
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    header = compact({k: v for k, v in data.items() if k != "cases"})
    cases = ",\n".join(compact(case) for case in data["cases"])
    text = header[:-1] + ',"cases":[\n' + cases + "\n]}\n"
    assert json.loads(text) == data  # floats round-trip exactly
    path.write_text(text)

if __name__ == "__main__":
    main()
