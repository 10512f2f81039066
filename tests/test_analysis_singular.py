"""Point-group rank bounds and the classifier of singular points (symmetry, incompleteness,
truncation), with ACSF."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

import atomdesc
from atomdesc import analysis as an
from atomdesc.analysis import singular

def octahedron(r=1.5):
    v = np.vstack([np.eye(3), -np.eye(3)]) * r
    return Atoms(["C"] + ["H"] * 6, positions=np.vstack([np.zeros(3), v]))


def square_planar(r=1.4):
    v = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]]) * r
    return Atoms(["C"] + ["H"] * 4, positions=np.vstack([np.zeros(3), v]))


def pyramid(r=1.1, angle=1.9):
    """C3v: three neighbours at equal distances and angles (ammonia-like)."""
    z = np.cos(np.pi - angle)
    v = [[np.sqrt(1 - z**2) * np.cos(p), np.sqrt(1 - z**2) * np.sin(p), -z]
         for p in (0, 2 * np.pi / 3, 4 * np.pi / 3)]
    return Atoms(["C"] + ["H"] * 3, positions=np.vstack([np.zeros(3), r * np.array(v)]))


@pytest.mark.parametrize("atoms, n_ops, bound", [
    (an.tetrahedron(), 24, 1),         # T_d: A1 + E + T1 + 2 T2
    (octahedron(), 48, 1),             # O_h: one A1g stretch
    (square_planar(), 16, 1),          # D4h
    (pyramid(), 6, 2),                 # C3v: symmetric stretch + umbrella
    (an.planar(seed=3), 2, 7),         # C_s
    (an.random_ch4(1), 1, 9),          # C1
    (an.xpm_branch_point(1), 1, 9),    # no symmetry: its null direction is not explained
])
def test_point_group_rank_bound(atoms, n_ops, bound):
    sym = singular.environment_symmetry(atoms, 0)
    assert sym.n_operations == n_ops
    assert sym.rank_bound == bound


def test_collinear_bound_and_proper_only_planar():
    sym = singular.environment_symmetry(an.collinear(), 0)
    assert sym.infinite and sym.rank_bound == 2 and sym.n_dof == 4
    # SO(3)-only features (pseudoscalars) are not bound by the mirror plane
    assert singular.environment_symmetry(an.planar(), 0, improper=False).rank_bound == 9
    assert singular.environment_symmetry(an.tetrahedron(), 0, improper=False).rank_bound == 1


def test_full_mode_bound_matches_centered():
    for atoms in (an.tetrahedron(), an.planar(), an.collinear(), pyramid()):
        a = singular.environment_symmetry(atoms, 0)
        b = singular.environment_symmetry(atoms, 0, mode="full")
        assert a.rank_bound == b.rank_bound


@pytest.mark.parametrize("atoms", [octahedron(), square_planar(), pyramid(), an.tetrahedron(1.2)])
def test_acsf_reaches_the_symmetry_bound(acsf, atoms):
    """On symmetric environments the tests never saw, the rank is the point-group bound."""
    c = an.classify(acsf, atoms, 0)
    assert c.sensitivity.rank == c.symmetry.rank_bound
    assert c.counts["symmetry"] == c.sensitivity.n_null
    assert c.counts["unexplained"] == 0


def test_classify_symmetric_environments(acsf):
    for atoms, n_sym in ((an.tetrahedron(), 8), (an.planar(), 2), (an.collinear(), 2)):
        c = an.classify(acsf, atoms, 0)
        assert c.counts == {"symmetry": n_sym, "incompleteness": 0, "truncation": 0,
                            "unexplained": 0}
    assert not an.classify(acsf, an.random_ch4(0), 0).singular


def test_branch_point_is_not_symmetry(acsf):
    """At the X± branch point the extra null direction is totally symmetric (C1): spurious."""
    c = an.classify(acsf, an.xpm_branch_point(1), 0)
    assert c.counts["unexplained"] == 1 and c.counts["symmetry"] == 0
    v = c.directions[0].vector
    assert np.argmax(np.linalg.norm(v, axis=1)) == 3  # H4 (moving atom 3) moves most
    assert abs(v[3, 1]) > 0.7  # ... along y


def test_incompleteness_radial_spectrum_vs_angular_reference(acsf_g2_g4):
    """ν = 1 at a random CH4: 5 null directions that a larger radial basis does not remove
    but a descriptor with angular (3-body) terms does."""
    G2, G4 = acsf_g2_g4
    radial = atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0, g2_params=G2)
    more_radial = atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0,
                                      g2_params=G2 + [[8.0, 0.5], [3.0, 1.5], [0.8, 2.0]])
    angular = atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0, g2_params=G2,
                                  g4_params=G4)
    c = an.classify(radial, an.random_ch4(1), 0, reference=angular, larger=[more_radial])
    assert c.sensitivity.rank == 4
    assert c.counts == {"symmetry": 0, "incompleteness": 5, "truncation": 0, "unexplained": 0}
    assert c.larger_ranks == [4] and c.reference_rank == 9


def test_truncation_too_few_functions(acsf, acsf_g2_g4):
    """Few symmetry functions (14 features >= 9 directions) still lose rank: truncation."""
    G2, G4 = acsf_g2_g4
    small = atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0, g2_params=G2[:3],
                                g4_params=G4[:2])
    c = an.classify(small, an.random_ch4(1), 0, larger=lambda: [acsf])
    assert small.n_features >= 9 and not c.too_few_features
    assert c.sensitivity.rank < 9
    assert c.counts["truncation"] == 9 - c.sensitivity.rank
    assert c.larger_ranks == [9]


def test_classification_to_dict(acsf):
    import json

    c = an.classify(acsf, an.planar(), 0)
    d = json.loads(json.dumps(c.to_dict()))
    assert d["counts"]["symmetry"] == 2 and d["symmetry"]["rank_bound"] == 7
    assert "rank 7 of 9" in c.summary()


def test_truncation_scan_and_dataset_statistics(acsf_g2_g4):
    G2, G4 = acsf_g2_g4
    def build(n_g2, n_g4):
        return atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0, g2_params=G2[:n_g2],
                                   g4_params=G4[:n_g4] or None)

    scan = an.truncation_scan(build, {"n_g2": [1, 4, 12], "n_g4": [0, 2, 24]}, an.random_ch4(1))
    ranks = scan.grid("rank")
    assert ranks.shape == (3, 3)
    assert ranks[0, 0] < 9 and ranks[-1, -1] == 9
    assert np.all(np.diff(ranks, axis=1) >= 0)  # more functions never lose rank
    assert "rank/dof" in scan.summary()
    # a family name + base hypers works too, and a bad grid point is reported, not raised
    scan2 = an.truncation_scan("acsf", {"r_cut": [4.0, -1.0]}, an.random_ch4(1),
                               base={"species": ["H", "C"], "g2_params": G2, "g4_params": G4})
    assert scan2.records[0]["rank"] == 9 and scan2.records[1]["error"]

    stats = an.dataset_statistics(build(12, 24), [an.random_ch4(s) for s in range(15)])
    d = stats.to_dict()
    assert d["n_environments"] == 15 and d["fraction_full_rank"] == 1.0
    assert 0 < d["relative_sigma_min"]["min"] <= d["relative_sigma_min"]["median"] < 1
