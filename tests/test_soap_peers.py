"""SOAP against DScribe 2.1 and featomic themselves, on random structures no test stores.

The stored references (``test_soap.py::test_reference_numbers``) fix a few
structures; these draw new molecules and triclinic cells with two or three
species and compare the conventions live, values, column order and (featomic)
position gradients. Skipped where the peers are not installed: neither is a
dependency of atomdesc.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

import atomdesc

SEED = 20261205


def random_molecule(rng: np.random.Generator, species: list[str], n: int) -> Atoms:
    while True:
        positions = rng.uniform(0.0, 4.5, (n, 3))
        distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
        if distances[np.triu_indices(n, 1)].min() > 0.9:
            return Atoms(symbols=list(rng.choice(species, n)), positions=positions)


def random_cell(rng: np.random.Generator, species: list[str], n: int) -> Atoms:
    cell = np.diag(rng.uniform(4.5, 6.5, 3)) + rng.uniform(-0.5, 0.5, (3, 3))
    while True:
        atoms = Atoms(symbols=list(rng.choice(species, n)), cell=cell, pbc=True,
                      scaled_positions=rng.uniform(0.0, 1.0, (n, 3)))
        if atoms.get_all_distances(mic=True)[np.triu_indices(n, 1)].min() > 1.2:
            return atoms


def structures() -> dict[str, Atoms]:
    rng = np.random.default_rng(SEED)
    return {"HCO molecule": random_molecule(rng, ["H", "C", "O"], 9),
            "SiC cell": random_cell(rng, ["Si", "C"], 8),
            "AlCuO cell": random_cell(rng, ["Al", "Cu", "O"], 10)}


WEIGHTINGS = {
    "none": None,
    "poly": {"function": "poly", "r0": 3.2, "c": 1.0, "m": 2.0},
    "pow": {"function": "pow", "r0": 2.5, "c": 1.0, "d": 1.0, "m": 3.0, "w0": 0.5},
    "exp": {"function": "exp", "r0": 1.5, "c": 2.0, "d": 0.7, "threshold": 1e-3},
}


def dscribe_cases() -> list:
    """A sample of (structure, rbf, weighting, compression, average, n_max, l_max, sigma)."""
    rng = np.random.default_rng(SEED)
    every = list(itertools.product(structures(), ["gto", "polynomial"], WEIGHTINGS,
                                   ["off", "mu2", "crossover"], ["off", "inner", "outer"]))
    cases = []
    for k in sorted(rng.choice(len(every), size=16, replace=False)):
        basis = (int(rng.integers(2, 6)), int(rng.integers(2, 7)), float(rng.uniform(0.3, 0.6)))
        cases.append(pytest.param(*every[k], *basis, id="-".join(every[k])))
    return cases


@pytest.mark.parametrize("name, rbf, weighting, compression, average, n_max, l_max, sigma",
                         dscribe_cases())
def test_dscribe_convention_matches_dscribe(name, rbf, weighting, compression, average,
                                            n_max, l_max, sigma):
    descriptors = pytest.importorskip("dscribe.descriptors")
    atoms = structures()[name]
    species = sorted(set(atoms.get_chemical_symbols()))
    common = dict(species=species, r_cut=4.2, n_max=n_max, l_max=l_max, sigma=sigma, rbf=rbf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = descriptors.SOAP(**common, periodic=bool(atoms.pbc.any()),
                                  weighting=WEIGHTINGS[weighting],
                                  compression={"mode": compression}, average=average)
        want = theirs.create(atoms)
    hypers = dict(common, convention="dscribe")
    if WEIGHTINGS[weighting] is not None:
        hypers["weighting"] = WEIGHTINGS[weighting]
    if compression != "off":
        hypers["compression"] = compression
    if average != "off":
        hypers["average"] = average
    got = atomdesc.descriptor("soap", **hypers).compute(atoms).features.reshape(want.shape)
    assert np.abs(got - want).max() <= 1e-8 * np.abs(want).max()


@pytest.mark.parametrize("name", list(structures()))
@pytest.mark.parametrize("average", ["off", "inner", "outer"])
def test_dscribe_convention_mu1nu1_matches_dscribe(name, average):
    """Darby et al.'s mu1nu1 compression, with DScribe's species weighting on the cells."""
    descriptors = pytest.importorskip("dscribe.descriptors")
    atoms = structures()[name]
    species = sorted(set(atoms.get_chemical_symbols()))
    rng = np.random.default_rng([SEED, len(atoms), len(average)])
    common = dict(species=species, r_cut=4.2, n_max=int(rng.integers(2, 6)),
                  l_max=int(rng.integers(2, 7)), sigma=float(rng.uniform(0.3, 0.6)),
                  rbf=str(rng.choice(["gto", "polynomial"])))
    compression = {"mode": "mu1nu1", "species_weighting": None}
    if atoms.pbc.any():
        compression["species_weighting"] = {s: float(w) for s, w in
                                            zip(species, rng.uniform(0.5, 2.0, len(species)))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = descriptors.SOAP(**common, periodic=bool(atoms.pbc.any()),
                                  compression=compression, average=average)
        want = theirs.create(atoms)
    d = atomdesc.descriptor("soap", **common, convention="dscribe", average=average,
                            compression=compression)
    got = d.compute(atoms).features.reshape(want.shape)
    assert np.abs(got - want).max() <= 1e-8 * np.abs(want).max()


@pytest.mark.parametrize("name", list(structures()))
@pytest.mark.parametrize("average", ["off", "outer"])
def test_dscribe_convention_at_points_matches_dscribe(name, average):
    """Centres at random points (inside the cell, where DScribe's periodic copies reach)."""
    descriptors = pytest.importorskip("dscribe.descriptors")
    atoms = structures()[name]
    species = sorted(set(atoms.get_chemical_symbols()))
    rng = np.random.default_rng([SEED, len(atoms), len(average), 7])
    common = dict(species=species, r_cut=4.0, n_max=int(rng.integers(2, 6)),
                  l_max=int(rng.integers(2, 7)), sigma=float(rng.uniform(0.3, 0.6)),
                  rbf=str(rng.choice(["gto", "polynomial"])))
    if atoms.pbc.any():
        points = rng.uniform(0.0, 1.0, (4, 3)) @ atoms.cell.array
    else:
        points = rng.uniform(atoms.positions.min(0) - 1.0, atoms.positions.max(0) + 1.0, (4, 3))
    distances = np.linalg.norm(points[:, None] - atoms.positions[None], axis=-1)
    points = points[distances.min(axis=1) > 0.3]  # none on an atom
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = descriptors.SOAP(**common, periodic=bool(atoms.pbc.any()), average=average)
        want = theirs.create(atoms, centers=points)
    d = atomdesc.descriptor("soap", **common, convention="dscribe", average=average)
    got = d.compute(atoms, centers=points).features.reshape(want.shape)
    assert np.abs(got - want).max() <= 1e-8 * np.abs(want).max()


@pytest.mark.parametrize("seed, compression", [(1, "off"), (2, "crossover"), (3, "off")])
def test_dscribe_convention_gradients_match_dscribes_analytic_ones(seed, compression):
    """DScribe has analytic derivatives for molecules, GTO, no weighting, no averaging,
    no mu2. ``attach=True``: the centre moves with its atom, as atomdesc's gradients do
    (DScribe's default keeps the centres fixed in space)."""
    descriptors = pytest.importorskip("dscribe.descriptors")
    rng = np.random.default_rng([SEED, seed])
    atoms = random_molecule(rng, ["H", "C", "O"], 9)
    species = sorted(set(atoms.get_chemical_symbols()))
    common = dict(species=species, r_cut=4.2, n_max=int(rng.integers(2, 6)),
                  l_max=int(rng.integers(2, 7)), sigma=float(rng.uniform(0.3, 0.6)), rbf="gto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = descriptors.SOAP(**common, compression={"mode": compression})
        want = theirs.derivatives(atoms, centers=list(range(len(atoms))), attach=True,
                                  method="analytical", return_descriptor=False)
    hypers = dict(common, convention="dscribe")
    if compression != "off":
        hypers["compression"] = compression
    got = atomdesc.descriptor("soap", **hypers).compute(atoms, gradients=True).dense_gradients()
    assert got.shape == want.shape
    # DScribe's analytic and numerical derivatives agree to ~1e-8 of the largest among themselves
    assert np.abs(got - want).max() <= 1e-8 * np.abs(want).max()


@pytest.mark.parametrize("name", list(structures()))
def test_featomic_convention_matches_featomic(name):
    compare_with_featomic(structures()[name], r_cut=4.5, n_max=6, l_max=5, sigma=0.3, width=0.8)


def test_featomic_convention_where_the_smoothing_falls_steeply():
    """One atom in a cell a little smaller than the cut-off, whose smoothing is narrow: the
    strain gradients come mostly from images where the smoothing falls steeply, the hardest
    place for the radial spline's derivative (1.4e-7 of the largest strain gradient while the
    derivatives were tabulated to 1e-6, 2.1e-8 since they are to 1e-8)."""
    cell = [[5.2623, -0.0113, -0.1929], [-0.2711, 4.9870, -0.3656], [0.0170, -0.0870, 5.5640]]
    atoms = Atoms("N", cell=cell, pbc=True, scaled_positions=[[0.1, 0.2, 0.3]])
    compare_with_featomic(atoms, r_cut=5.2822, n_max=2, l_max=1, sigma=0.466, width=0.2437)


@pytest.mark.parametrize("name", list(structures()))
def test_featomic_convention_expansion_matches_featomics(name):
    """``spherical_expansion`` against featomic's ``SphericalExpansion``: the same real
    spherical harmonics, coefficient by coefficient, with position and strain gradients."""
    atoms = structures()[name]
    theirs, d, ours = featomic_and_ours("SphericalExpansion", "spherical_expansion", atoms,
                                        r_cut=4.5, n_max=5, l_max=4, sigma=0.35, width=0.7)
    periodic = bool(atoms.pbc.any())
    column = {label: k for k, label in enumerate(d.feature_labels)}
    pair = {(int(row), int(atom)): p for p, (row, atom) in enumerate(ours.gradient_pairs)}
    scale = max(np.abs(block.values).max() for block in theirs.blocks())
    gscale = max(np.abs(block.gradient("positions").values).max(initial=0.0)
                 for block in theirs.blocks())
    compared = 0
    for key, block in theirs.items():
        l, _, _, z = (int(v) for v in key.values)
        # featomic's components m and properties n of neighbour species z, as our (m, n)
        columns = np.array([[column[(chemical_symbols[z], int(n), l, int(m))]
                             for n in block.properties.values[:, 0]]
                            for m in block.components[0].values[:, 0]])
        centres = block.samples.values[:, 1]
        np.testing.assert_allclose(ours.features[centres][:, columns], block.values,
                                   rtol=0, atol=1e-10 * scale)
        gradient = block.gradient("positions")
        for values, (sample, _, atom) in zip(gradient.values, gradient.samples.values):
            p = pair.get((int(centres[sample]), int(atom)))
            mine = 0.0 if p is None else ours.gradient_values[p][:, columns]
            np.testing.assert_allclose(mine, values, rtol=0, atol=5e-8 * gscale)
            compared += 1
        if periodic:
            # featomic's [a, b] is sum_j r_ja dX/dr_jb, ours dX/deps_ab = sum_j dX/dr_ja r_jb:
            # transposed (invariants' strain gradients are symmetric, these are not)
            strain = block.gradient("strain")
            sscale = max(np.abs(strain.values).max(), 1e-300)
            for values, (sample,) in zip(strain.values, strain.samples.values):
                mine = ours.strain_gradients[centres[sample]].transpose(1, 0, 2)
                np.testing.assert_allclose(mine[:, :, columns], values, rtol=0,
                                           atol=5e-8 * sscale)
                compared += 1
    assert compared > 0


def featomic_and_ours(calculator: str, family: str, atoms: Atoms, r_cut: float, n_max: int,
                      l_max: int, sigma: float, width: float):
    """featomic's ``calculator`` and atomdesc's ``family`` (``convention="featomic"``) with
    the same hyper-parameters, both computed with position and (cells) strain gradients:
    (featomic's TensorMap, the descriptor, its result)."""
    featomic = pytest.importorskip("featomic")
    species = sorted(set(atoms.get_chemical_symbols()), key=atomic_numbers.get)
    theirs = getattr(featomic, calculator)(
        cutoff={"radius": r_cut, "smoothing": {"type": "ShiftedCosine", "width": width}},
        density={"type": "Gaussian", "width": sigma},
        basis={"type": "TensorProduct", "max_angular": l_max, "spline_accuracy": None,
               "radial": {"type": "Gto", "max_radial": n_max - 1}})
    periodic = bool(atoms.pbc.any())  # featomic's strain gradients need a cell
    d = atomdesc.descriptor(family, species=species, r_cut=r_cut, n_max=n_max, l_max=l_max,
                            sigma=sigma, convention="featomic",
                            cutoff={"name": "shifted_cosine", "width": width})
    return (theirs.compute(atoms, gradients=["positions", "strain"] if periodic
                           else ["positions"]),
            d, d.compute(atoms, gradients=True, strain_gradients=periodic))


def compare_with_featomic(atoms: Atoms, r_cut: float, n_max: int, l_max: int, sigma: float,
                          width: float) -> None:
    """Features, position and (cells) strain gradients of ``convention="featomic"``
    against featomic's ``SoapPowerSpectrum``, block by block."""
    theirs, d, ours = featomic_and_ours("SoapPowerSpectrum", "soap", atoms, r_cut=r_cut,
                                        n_max=n_max, l_max=l_max, sigma=sigma, width=width)
    periodic = bool(atoms.pbc.any())
    column = {label: k for k, label in enumerate(d.feature_labels)}
    pair = {(int(row), int(atom)): p for p, (row, atom) in enumerate(ours.gradient_pairs)}
    # the radial spline's derivatives are tabulated to 1e-8 of the largest (featomic's
    # are exact); a gradient sums several: within a few times that (measured <= 2.1e-8)
    atol = 5e-8
    compared = 0
    for key, block in theirs.items():
        _, z1, z2 = (int(z) for z in key.values)
        # featomic's properties (l, n1, n2) of the species pair (z1, z2)
        columns = [column[(chemical_symbols[z1], int(n1), chemical_symbols[z2], int(n2), int(l))]
                   for l, n1, n2 in block.properties.values]
        centres = block.samples.values[:, 1]
        scale = np.abs(block.values).max()
        np.testing.assert_allclose(ours.features[np.ix_(centres, columns)], block.values,
                                   rtol=0, atol=1e-10 * scale)
        gradient = block.gradient("positions")
        scale = np.abs(gradient.values).max(initial=0.0)
        for values, (sample, _, atom) in zip(gradient.values, gradient.samples.values):
            p = pair.get((int(centres[sample]), int(atom)))
            if p is None:  # featomic lists pairs beyond the cutoff, with zero gradients
                assert np.abs(values).max() <= 1e-12 * scale
                continue
            np.testing.assert_allclose(ours.gradient_values[p][:, columns], values,
                                       rtol=0, atol=atol * scale)
            compared += 1
        if periodic:  # featomic's strain gradient: one (3, 3) per centre, as ours
            strain = block.gradient("strain")
            scale = max(np.abs(strain.values).max(), 1e-300)
            for values, (sample,) in zip(strain.values, strain.samples.values):
                np.testing.assert_allclose(ours.strain_gradients[centres[sample]][:, :, columns],
                                           values, rtol=0, atol=atol * scale)
                compared += 1
    assert compared > 0
