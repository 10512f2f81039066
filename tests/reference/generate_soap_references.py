"""Generate tests/data/soap_references.npz from DScribe 2.1 and featomic.

Run with an environment that has both (neither is an atomdesc dependency):

    /opt/refvenv/bin/python tests/reference/generate_soap_references.py

Every case stores the structure (positions, numbers, cell, pbc), the
atomdesc hyper-parameters that should reproduce it, and the reference
features in atomdesc's column order.
"""

import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule

from importlib.metadata import version
import featomic
from dscribe.descriptors import SOAP

OUT = Path(__file__).resolve().parent.parent / "data" / "soap_references.npz"


def structures():
    methanol = molecule("CH3OH")
    water2 = molecule("H2O")
    water2 += molecule("H2O")
    water2.positions[3:] += [2.7, 0.3, 0.2]
    rng = np.random.default_rng(7)
    si = bulk("Si", "diamond", a=5.43)
    si.positions += rng.normal(scale=0.05, size=si.positions.shape)
    sic = bulk("SiC", "zincblende", a=4.36) * (1, 1, 2)
    sic.positions += rng.normal(scale=0.05, size=sic.positions.shape)
    return {"methanol": methanol, "water2": water2, "si": si, "sic": sic}


def dscribe_cases():
    hco = dict(species=["H", "C", "O"], r_cut=4.0, n_max=4, l_max=4, sigma=0.5)
    cases = [
        ("methanol", hco, {}),
        ("water2", hco, {}),
        ("methanol", {**hco, "rbf": "polynomial"}, {}),
        ("methanol", {**hco, "weighting": {"function": "poly", "r0": 3.5, "c": 1.0, "m": 2.0}}, {}),
        ("methanol", {**hco, "weighting": {"function": "pow", "r0": 2.0, "c": 1.0, "d": 1.0, "m": 4.0}}, {}),
        ("methanol", {**hco, "weighting": {"function": "exp", "r0": 1.0, "c": 1.0, "d": 0.5}}, {}),
        ("methanol", {**hco, "weighting": {"w0": 0.3}}, {}),
        ("methanol", {**hco, "compression": {"mode": "mu2", "species_weighting": None}}, {}),
        ("methanol", {**hco, "compression": {"mode": "crossover", "species_weighting": None}}, {}),
        ("methanol", {**hco, "average": "inner"}, {}),
        ("methanol", {**hco, "average": "outer"}, {}),
        ("si", dict(species=["Si"], r_cut=4.0, n_max=5, l_max=5, sigma=0.4, periodic=True), {}),
        ("sic", dict(species=["C", "Si"], r_cut=3.5, n_max=3, l_max=3, sigma=0.5, periodic=True), {}),
        ("sic", dict(species=["C", "Si"], r_cut=3.5, n_max=3, l_max=3, sigma=0.5, periodic=True,
                     rbf="polynomial"), {}),
        ("methanol", {**hco, "compression": {"mode": "mu1nu1", "species_weighting": None}}, {}),
        ("sic", dict(species=["C", "Si"], r_cut=3.5, n_max=3, l_max=3, sigma=0.5, periodic=True,
                     compression={"mode": "mu1nu1", "species_weighting": {"C": 0.7, "Si": 1.3}},
                     average="inner"), {}),
        # centres at points (the third item: arguments of create); inside the cell: DScribe's
        # periodic copies do not reach far outside it (a point and its image then differ)
        ("methanol", hco, {"centers": [[0.4, 0.3, -0.2], [-1.1, 0.6, 0.9], [2.5, -2.0, 1.5]]}),
        ("sic", dict(species=["C", "Si"], r_cut=3.5, n_max=3, l_max=3, sigma=0.5, periodic=True,
                     rbf="polynomial"), {"centers": [[0.7, 0.5, 0.3], [5.7, 5.4, 3.1]]}),
    ]
    return cases


def to_atomdesc_hypers(kw):
    h = dict(kw)
    h.pop("periodic", None)
    comp = h.pop("compression", None)
    if comp is not None:
        h["compression"] = comp["mode"] if comp["species_weighting"] is None else comp
    h["convention"] = "dscribe"
    return h


def featomic_case(atoms, species, r_cut, n_max, l_max, sigma, width):
    calc = featomic.SoapPowerSpectrum(
        cutoff={"radius": r_cut, "smoothing": {"type": "ShiftedCosine", "width": width}},
        density={"type": "Gaussian", "width": sigma},
        basis={"type": "TensorProduct", "max_angular": l_max,
               "radial": {"type": "Gto", "max_radial": n_max - 1}, "spline_accuracy": None},
    )
    desc = calc.compute(atoms)
    numbers = {s: n for n, s in zip(atoms.numbers, atoms.get_chemical_symbols())}
    from ase.data import atomic_numbers
    zs = sorted(atomic_numbers[s] for s in species)
    out = np.zeros((len(atoms), 0))
    columns = []
    for i1, z1 in enumerate(zs):
        for z2 in zs[i1:]:
            for l in range(l_max + 1):
                for n1 in range(n_max):
                    for n2 in range(n_max):
                        columns.append((z1, z2, l, n1, n2))
    feats = np.zeros((len(atoms), len(columns)))
    index = {c: k for k, c in enumerate(columns)}
    for key, block in desc.items():
        zc, z1, z2 = (int(v) for v in key.values)
        atoms_idx = block.samples.column("atom")
        for p, prop in enumerate(block.properties.values):
            l, n1, n2 = (int(v) for v in prop)
            feats[atoms_idx, index[(z1, z2, l, n1, n2)]] = block.values[:, p]
    return feats


def main():
    structs = structures()
    data = {}
    meta = []
    for k, (name, kw, create) in enumerate(dscribe_cases()):
        atoms = structs[name]
        soap = SOAP(**kw)
        data[f"dscribe_{k}"] = np.atleast_2d(soap.create(atoms, **create))
        meta.append({"key": f"dscribe_{k}", "structure": name, "hypers": to_atomdesc_hypers(kw),
                     **create})
    fcases = [
        ("methanol", dict(species=["H", "C", "O"], r_cut=4.0, n_max=4, l_max=4, sigma=0.5)),
        ("water2", dict(species=["H", "O"], r_cut=3.5, n_max=5, l_max=3, sigma=0.3)),
        ("sic", dict(species=["C", "Si"], r_cut=3.5, n_max=3, l_max=3, sigma=0.5)),
        # cut-offs whose smoothing starts at no simple fraction of them (10 bohr; 3.8755 Å)
        ("sic", dict(species=["C", "Si"], r_cut=5.29177, n_max=3, l_max=3, sigma=0.4)),
        ("methanol", dict(species=["H", "C", "O"], r_cut=3.8755, n_max=4, l_max=3, sigma=0.35)),
    ]
    for k, (name, kw) in enumerate(fcases):
        data[f"featomic_{k}"] = featomic_case(structs[name], width=0.5, **kw)
        meta.append({"key": f"featomic_{k}", "structure": name,
                     "hypers": {**kw, "convention": "featomic",
                                "cutoff": {"name": "shifted_cosine", "width": 0.5}}})
    for name, atoms in structs.items():
        data[f"structure_{name}_positions"] = atoms.positions
        data[f"structure_{name}_numbers"] = atoms.numbers
        data[f"structure_{name}_cell"] = atoms.cell.array
        data[f"structure_{name}_pbc"] = atoms.pbc
    data["meta"] = np.array(json.dumps({"cases": meta, "dscribe": version("dscribe"),
                                        "featomic": featomic.__version__}))
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
