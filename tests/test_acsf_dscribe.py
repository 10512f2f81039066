"""ACSF against stored DScribe 2.1 numbers: same values, same column order.

The reference data come from ``tests/reference/generate_dscribe_acsf.py``;
DScribe itself is not needed (nor imported) to run these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

import atomdesc

DATA = Path(__file__).parent / "data" / "dscribe_acsf.json"
REFERENCE = json.loads(DATA.read_text())
CASES = {c["name"]: c for c in REFERENCE["cases"]}


def case(name):
    """(atoms, hypers, centers, DScribe's features) of one stored case."""
    c = CASES[name]
    atoms = Atoms(numbers=c["numbers"], positions=c["positions"], cell=c["cell"], pbc=c["pbc"])
    # atomdesc takes periodicity from atoms.pbc; DScribe was given periodic=True
    # exactly for the structures with a periodic axis.
    assert c["periodic"] == any(c["pbc"])
    return atoms, c["hypers"], c["centers"], np.array(c["features"])


def test_reference_file_is_small_and_versioned():
    assert DATA.stat().st_size < 300_000
    assert REFERENCE["dscribe_version"].startswith("2.1")


@pytest.mark.parametrize("name", list(CASES))
def test_matches_dscribe(name):
    atoms, hypers, centers, expected = case(name)
    d = atomdesc.descriptor("acsf", **hypers)  # convention="dscribe" is the default
    result = d.compute(atoms, centers=centers)

    n_centers = len(atoms) if centers is None else len(centers)
    assert result.features.shape == expected.shape == (n_centers, d.n_features)
    if centers is not None:
        np.testing.assert_array_equal(result.centers, centers)
    np.testing.assert_allclose(result.features, expected, rtol=1e-10, atol=1e-12)


def test_right_angle_triplet_closed_form():
    # SCIENCE.md 2.2: R_jk = 2 sqrt(2) > r_c, so G4 vanishes while G5 does not.
    atoms, hypers, _, expected = case("right_angle_triplet")
    features = atomdesc.descriptor("acsf", **hypers).compute(atoms).features
    g1, g4, g5 = features[0]
    assert g1 == pytest.approx(0.3765101981412665, rel=1e-14)
    assert g4 == 0.0
    assert g5 == pytest.approx(1.1888789603930048e-05, rel=1e-12)
    np.testing.assert_allclose(features[0], expected[0], rtol=1e-10, atol=1e-12)


def test_feature_labels_follow_dscribe_layout():
    """Per species [G1, G2.., G3..], then per species pair [G4.., G5..].

    The species and pair order is the one DScribe was probed to use (stored
    under ``layout``): species by atomic number, and pairs (a, b) with a <= b
    ordered by b, then a (H-H, H-C, C-C, H-O, C-O, O-O).
    """
    layout = REFERENCE["layout"]
    species, g1_species, g5_pairs = layout["species"], layout["g1_species"], layout["g5_pairs"]
    # The parameter counts of a stored three-species case.
    _, hypers, _, _ = case("molecule_CH3CH2OH")
    assert hypers["species"] == species
    n2, n3 = len(hypers["g2_params"]), len(hypers["g3_params"])
    n4, n5 = len(hypers["g4_params"]), len(hypers["g5_params"])

    expected = []
    for s in g1_species:
        expected += [("G1", s, 0)]
        expected += [("G2", s, k) for k in range(n2)]
        expected += [("G3", s, k) for k in range(n3)]
    for pair in g5_pairs:
        expected += [("G4", pair, k) for k in range(n4)]
        expected += [("G5", pair, k) for k in range(n5)]

    d = atomdesc.descriptor("acsf", **hypers)
    assert list(d.feature_labels) == expected
    assert d.n_features == len(expected)
    result = d.compute(Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
    assert list(result.feature_labels) == expected
