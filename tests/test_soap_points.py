"""SOAP families with centres at points in space (``centers`` as an (n, 3) array).

ACSF takes points too (the same neighbour-list path): its tests are in test_acsf.py."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

import atomdesc
from atomdesc.descriptor import check_centers
from plugins import soap as soap_plugin

FAMILIES = ["spherical_expansion", "soap", "bispectrum"]


def small(family, **kwargs):
    hypers = dict(species=["H", "C", "O"], r_cut=4.0, n_max=3, l_max=3, sigma=0.4)
    return atomdesc.descriptor(family, **{**hypers, **kwargs})


@pytest.fixture(scope="module")
def ethanol():
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    return atoms


@pytest.fixture(scope="module")
def cell():
    cell = np.array([[4.6, 0.0, 0.0], [0.6, 4.3, 0.0], [0.4, -0.5, 4.9]])
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.1], [0.25, 0.7, 0.6], [0.8, 0.2, 0.45]])
    atoms = Atoms("COHH", scaled_positions=frac, cell=cell, pbc=True)
    atoms.rattle(0.05, seed=2)
    return atoms


POINTS = np.array([[0.3, 0.2, 0.1], [1.0, -0.5, 0.7], [-0.8, 1.1, -0.4]])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("system", ["molecule", "periodic"])
def test_derivatives_at_points_match_finite_differences(family, system, ethanol, cell, checks):
    atoms = {"molecule": ethanol, "periodic": cell}[system]
    d = small(family)
    res = d.compute(atoms, centers=POINTS, gradients=True, strain_gradients=True)
    assert res.centers.shape == (3, 3) and res.n_atoms == len(atoms)
    assert (res.gradient_pairs[:, 1] < len(atoms)).all()  # the points do not move
    fd = checks.fd_gradients(d, atoms, centers=POINTS)
    assert checks.relative_error(res.dense_gradients(), fd) <= 1e-6
    strain = checks.fd_strain(d, atoms, centers=POINTS)
    assert checks.relative_error(res.strain_gradients, strain) <= 1e-6


@pytest.mark.parametrize("options", [dict(average="inner"), dict(average="outer"),
                                     dict(compression="mu1nu1"),
                                     dict(species=["H", "B", "C", "N", "O", "F"])])
def test_soap_options_at_points_match_finite_differences(options, ethanol, checks):
    d = small("soap", **options)
    res = d.compute(ethanol, centers=POINTS, gradients=True, strain_gradients=True)
    fd = checks.fd_gradients(d, ethanol, centers=POINTS)
    assert checks.relative_error(res.dense_gradients(), fd) <= 1e-6
    assert checks.relative_error(res.strain_gradients,
                                 checks.fd_strain(d, ethanol, centers=POINTS)) <= 1e-6


@pytest.mark.parametrize("family, options", [("soap", {}), ("bispectrum", {"parity": "all"})])
def test_points_turned_and_moved_with_the_atoms_give_the_same_features(family, options,
                                                                        ethanol, checks):
    d = small(family, l_max=4, **options)
    want = d.compute(ethanol, centers=POINTS).features
    for seed in range(2):
        rotation = checks.random_rotation(seed)
        shift = np.array([3.0, -1.0, 2.5]) * (seed + 1)
        moved = ethanol.copy()
        moved.positions = ethanol.positions @ rotation.T + shift
        got = d.compute(moved, centers=POINTS @ rotation.T + shift).features
        assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()


def test_a_point_and_its_periodic_images_agree(cell):
    d = small("soap")
    lattice = cell.cell.array
    images = POINTS[:1] + np.array([[0, 0, 0], lattice[0], -lattice[1] + 2 * lattice[2]])
    features = d.compute(cell, centers=images).features
    assert np.abs(features - features[0]).max() <= 1e-12 * np.abs(features).max()
    supercell = cell * (2, 1, 1)
    np.testing.assert_allclose(d.compute(supercell, centers=POINTS).features,
                               d.compute(cell, centers=POINTS).features, rtol=0, atol=1e-12)


def test_a_point_with_no_atom_in_reach_has_zero_features_and_gradients(ethanol):
    far = np.array([[50.0, 0.0, 0.0]])
    res = small("soap").compute(ethanol, centers=far, gradients=True, strain_gradients=True)
    assert not res.features.any() and not res.strain_gradients.any()
    assert len(res.gradient_pairs) == 0


@pytest.mark.parametrize("convention", ["atomdesc", "dscribe"])
def test_a_point_closing_in_on_an_atom_tends_to_its_environment(convention, ethanol):
    d = small("soap", convention=convention, center_atom_weight=1.0)
    atom = d.compute(ethanol, centers=[2]).features
    scale = np.abs(atom).max()
    gaps = [np.abs(d.compute(ethanol, centers=ethanol.positions[[2]] + [h, 0, 0]).features
                   - atom).max() / scale for h in (0.1, 0.02)]
    assert gaps[1] < 0.3 * gaps[0] and gaps[1] < 0.03  # linear in the distance


def test_points_are_the_same_on_any_path(ethanol, monkeypatch):
    d = small("soap", species=["H", "B", "C", "N", "O", "F"])
    one = d.compute(ethanol, centers=POINTS, gradients=True, strain_gradients=True, n_threads=1)
    two = d.compute(ethanol, centers=POINTS, gradients=True, strain_gradients=True, n_threads=2)
    monkeypatch.setattr(soap_plugin._DensityExpansion, "_few_channels_around",
                        lambda *a, **k: False)
    dense = d.compute(ethanol, centers=POINTS, gradients=True, strain_gradients=True)
    for other in (two, dense):
        np.testing.assert_array_equal(other.features, one.features)
        np.testing.assert_array_equal(other.gradient_pairs, one.gradient_pairs)
        np.testing.assert_array_equal(other.gradient_values, one.gradient_values)
        np.testing.assert_array_equal(other.strain_gradients, one.strain_gradients)


def test_a_point_given_twice_gives_the_same_row_twice(ethanol):
    twice = np.concatenate([POINTS[:1], POINTS[:1], POINTS[1:]])
    res = small("soap").compute(ethanol, centers=twice, gradients=True)
    np.testing.assert_array_equal(res.features[0], res.features[1])
    once = small("soap").compute(ethanol, centers=POINTS, gradients=True)
    np.testing.assert_array_equal(res.features[1:], once.features)


def test_points_with_a_list_apply_to_each_structure(ethanol):
    d = small("soap")
    water = molecule("H2O")
    results = d.compute([ethanol, water], centers=POINTS, gradients=True)
    for atoms, res in zip([ethanol, water], results):
        alone = d.compute(atoms, centers=POINTS, gradients=True)
        np.testing.assert_array_equal(res.centers, POINTS)
        np.testing.assert_array_equal(res.features, alone.features)
        np.testing.assert_array_equal(res.gradient_values, alone.gradient_values)


def test_bad_points_are_refused(ethanol):
    d = small("soap")
    on_atom = ethanol.positions[[2]] + [0.001, 0.0, 0.0]
    with pytest.raises(ValueError, match="center point 0 is 0.001 Å from atom 2.*atom's index"):
        d.compute(ethanol, centers=on_atom)
    with pytest.raises(ValueError, match="finite"):
        d.compute(ethanol, centers=[[0.0, np.nan, 0.0]])
    with pytest.raises(ValueError, match="1-D list of atom indices"):
        d.compute(ethanol, centers=[[0.0, 1.0]])
    with pytest.raises(ValueError, match="my_family takes atom indices as centers, not points"):
        check_centers(POINTS, len(ethanol), points=False, family="my_family")
    crystal = bulk("Si", "diamond", 5.43)
    image = crystal.positions[[1]] + crystal.cell[0]  # an atom's periodic image
    with pytest.raises(ValueError, match="center point 0 is .* Å from atom 1"):
        small("soap", species=["Si"]).compute(crystal, centers=image)
