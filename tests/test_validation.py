"""Bad input gives a ValueError naming the problem, never a crash or a silent answer."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

import atomdesc
from atomdesc.system import face_normals


@pytest.fixture
def d():
    return atomdesc.descriptor("acsf", species=["H", "O"], r_cut=3.0, g2_params=[[1.0, 0.0]],
                               g4_params=[[0.1, 1, 1]])


def water(**kwargs):
    return Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_positions(d, bad):
    atoms = water()
    atoms.positions[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        d.compute(atoms)


def test_singular_cell_with_pbc(d):
    atoms = water(cell=[[3, 0, 0], [6, 0, 0], [0, 0, 4]], pbc=True)
    with pytest.raises(ValueError, match="singular"):
        d.compute(atoms)
    atoms = water(cell=[[3, 0, 0], [0, 0, 0], [0, 0, 4]], pbc=True)
    with pytest.raises(ValueError, match="zero"):
        d.compute(atoms)


def test_singular_cell_along_two_periodic_axes(d):
    atoms = water(cell=[[3, 0, 0], [-6, 0, 0], [0, 0, 0]], pbc=[True, True, False])
    with pytest.raises(ValueError, match="singular"):
        d.compute(atoms)
    # the same vectors along one periodic axis and a non-periodic one are fine
    atoms = water(cell=[[3, 0, 0], [-6, 0, 0], [0, 0, 0]], pbc=[True, False, False])
    assert d.compute(atoms).features.shape == (3, d.n_features)


def test_cell_with_too_many_images_in_the_cutoff(d, monkeypatch):
    from atomdesc import neighbours

    # the limit is half of the machine's memory: a small one here, the same path
    monkeypatch.setattr(neighbours, "pair_limit", lambda: 1000)
    atoms = Atoms("H", cell=np.eye(3) * 0.3, pbc=True)  # ~4 000 images within 3 Å: ~2 000 pairs
    with pytest.raises(ValueError, match=r"periodic images of it\): ~.* neighbour pairs"):
        d.compute(atoms)


def test_face_normals_are_cross_products():
    cell = np.random.default_rng(3).normal(size=(3, 3))
    np.testing.assert_array_equal(face_normals(cell), np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]))


def test_zero_cell_is_fine_without_pbc(d):
    assert d.compute(water()).features.shape == (3, d.n_features)


def test_species_not_declared(d):
    atoms = Atoms("OHCu", positions=[[0, 0, 0], [1, 0, 0], [0, 2, 0]])
    with pytest.raises(ValueError, match=r"\['Cu'\].*not in species"):
        d.compute(atoms)


def test_overlapping_atoms(d):
    atoms = Atoms("OHH", positions=[[0, 0, 0], [1, 0, 0], [1, 0, 1e-4]])
    with pytest.raises(ValueError, match="overlapping"):
        d.compute(atoms)
    tiny = Atoms("H", cell=np.eye(3) * 1e-3, pbc=True)  # an atom on top of its own images
    with pytest.raises(ValueError, match="own periodic image"):
        d.compute(tiny)


@pytest.mark.parametrize("r_cut", [0, -1.0, np.nan, np.inf, "far"])
def test_bad_cutoff_radius(r_cut):
    with pytest.raises(ValueError, match="r_cut"):
        atomdesc.descriptor("acsf", species=["H"], r_cut=r_cut)


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("g2_params", [[1.0]], "g2_params must be a list of \\[eta, r_s\\]"),
        ("g2_params", [[1.0, 0.0, 3.0]], "g2_params"),
        ("g2_params", [[-1.0, 0.0]], "eta must be >= 0"),
        ("g2_params", "abc", "g2_params"),
        ("g2_params", [[np.nan, 0.0]], "NaN or inf"),
        ("g3_params", [[1.0, 2.0]], "g3_params"),
        ("g4_params", [[0.1, 1.0]], "g4_params"),
        ("g4_params", [[0.1, 0.5, 1.0]], "zeta must be >= 1"),
        ("g4_params", [[0.1, 1.0, 0.5]], "lambda must be \\+1 or -1"),
        ("g5_params", [[-0.1, 1.0, 1.0]], "eta must be >= 0"),
        ("g5_params", [["a", 1.0, 1.0]], "g5_params"),
    ],
)
def test_malformed_parameter_lists(name, value, match):
    with pytest.raises(ValueError, match=match):
        atomdesc.descriptor("acsf", species=["H"], r_cut=3.0, **{name: value})


@pytest.mark.parametrize(
    "hypers, match",
    [
        (dict(species=[]), "at least one element"),
        (dict(species=["H", "Xx"]), "unknown species"),
        (dict(species=["H", "H"]), "repeated"),
        (dict(species=["H"], cutoff="nope"), "unknown cutoff function 'nope'"),
        (dict(species=["H"], cutoff={"name": "polynomial", "order": 7}), "order"),
        (dict(species=["H"], cutoff={"name": "cosine", "width": 1}), "no parameter"),
        (dict(species=["H"], convention="quip"), "convention"),
        (dict(species=["H"], g9_params=[1]), "invalid hyper-parameters"),
    ],
)
def test_bad_hyper_parameters(hypers, match):
    with pytest.raises(ValueError, match=match):
        atomdesc.descriptor("acsf", r_cut=3.0, **hypers)


def test_unknown_family():
    with pytest.raises(ValueError, match="unknown descriptor family 'nope'"):
        atomdesc.descriptor("nope")
    with pytest.raises(ValueError, match="'family'"):
        atomdesc.descriptor_from_hypers({"r_cut": 3.0})


@pytest.mark.parametrize(
    "centers, match",
    [
        ([0, 3], r"out of range.*\[3\]"),
        ([-1], "out of range"),
        ([[0, 1]], "1-D"),
        ([0.5], "integer"),
        ([], "empty"),
    ],
)
def test_bad_centers(d, centers, match):
    with pytest.raises(ValueError, match=match):
        d.compute(water(), centers=centers)


def test_bad_structures(d):
    with pytest.raises(ValueError, match="no atoms"):
        d.compute(Atoms())
    with pytest.raises(TypeError, match="ase.Atoms"):
        d.compute("water.xyz")
    with pytest.raises(ValueError, match="n_threads"):
        d.compute(water(), n_threads=0)


def test_isolated_atom_and_atoms_beyond_cutoff(d):
    far = Atoms("OH", positions=[[0, 0, 0], [10, 0, 0]])
    res = d.compute(far, gradients=True, strain_gradients=True)
    assert np.all(res.features == 0) and np.all(res.gradient_values == 0)
    assert np.all(np.isfinite(res.strain_gradients))
