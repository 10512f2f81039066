"""The ACSF family: closed forms, derivatives, invariances, periodic images, threads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase import Atoms

import atomdesc

G2 = [[0.5, 0.0], [1.0, 1.2], [0.05, 2.5]]
G3 = [0.8, 2.1]
G4 = [[0.02, 1.0, 1.0], [0.1, 2.0, -1.0], [0.05, 2.5, 1.0], [0.01, 16.0, -1.0]]
G5 = [[0.03, 1.0, -1.0], [0.2, 4.0, 1.0], [0.05, 1.5, -1.0]]


def acsf(species, r_cut=4.5, **kwargs):
    params = dict(g2_params=G2, g3_params=G3, g4_params=G4, g5_params=G5)
    params.update(kwargs)
    return atomdesc.descriptor("acsf", species=species, r_cut=r_cut, **params)


# ----------------------------------------------------------- closed forms (T6)


def test_right_angle_triplet_closed_form():
    atoms = Atoms("H3", positions=[[0, 0, 0], [2, 0, 0], [0, 2, 0]])
    d = atomdesc.descriptor("acsf", species=["H"], r_cut=2.8,
                            g4_params=[[1, 1, 1]], g5_params=[[1, 1, 1]])
    g1, g4, g5 = d.compute(atoms, centers=[0]).features[0]
    assert g1 == pytest.approx(0.3765101981412665, rel=1e-12)
    assert g4 == 0.0  # R_jk = 2 sqrt(2) > r_c
    assert g5 == pytest.approx(1.1888789603930048e-05, rel=1e-12)


def tetrahedral_methane(r=1.09):
    directions = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    return Atoms("CH4", positions=np.vstack([[0, 0, 0], r * directions]))


@pytest.mark.parametrize("convention, factor", [("dscribe", 1.0), ("all_pairs", 2.0)])
def test_tetrahedral_methane_closed_form(convention, factor):
    d = atomdesc.descriptor("acsf", species=["H", "C"], r_cut=3.0, g2_params=[[1.0, 1.0]],
                            g4_params=[[0.1, 1, 1]], g5_params=[[0.1, 1, 1]],
                            convention=convention)
    row = d.compute(tetrahedral_methane(), centers=[0]).features[0]
    labels = d.feature_labels
    value = {(f, s): row[i] for i, (f, s, _) in enumerate(labels)}
    assert value["G2", "H"] == pytest.approx(2.809710507486301, rel=1e-12)
    assert value["G4", "H-H"] == pytest.approx(factor * 0.40958941087508527, rel=1e-12)
    assert value["G5", "H-H"] == pytest.approx(factor * 1.5816182795885538, rel=1e-12)
    assert value["G2", "C"] == 0.0 and value["G4", "H-C"] == 0.0


# ------------------------------------------ independent reference (all cutoffs)


def reference_acsf(atoms, center, species, r_cut, cutoff):
    """Direct, loop-by-loop ACSF of one centre of a molecule (the test's own implementation)."""
    fc = {
        "cosine": lambda r: 0.5 * (np.cos(np.pi * r / r_cut) + 1) * (r < r_cut),
        "tanh3": lambda r: np.tanh(1 - r / r_cut) ** 3 * (r < r_cut),
        "polynomial": lambda r: (((15 - 6 * r / r_cut) * r / r_cut - 10) * (r / r_cut) ** 3 + 1)
        * (r < r_cut),
        # width 0.5, tabulated (a plugin cutoff, with a breakpoint at r_cut - 0.5)
        "shifted_cosine": lambda r: 0.5 * (1 + np.cos(np.pi * np.clip(2 * (r - r_cut) + 1, 0, 1)))
        * (r < r_cut),
    }[cutoff]
    pos, sym = atoms.positions, atoms.get_chemical_symbols()
    others = [j for j in range(len(atoms)) if j != center]
    out = []
    for s in species:
        nbrs = [j for j in others if sym[j] == s]
        rs = [np.linalg.norm(pos[j] - pos[center]) for j in nbrs]
        out.append(sum(fc(r) for r in rs))
        out += [sum(np.exp(-eta * (r - r_s) ** 2) * fc(r) for r in rs) for eta, r_s in G2]
        out += [sum(np.cos(kappa * r) * fc(r) for r in rs) for kappa in G3]
    # species pairs in DScribe's order: (0,0), (0,1), (1,1), (0,2), (1,2), (2,2), ...
    for a, b in ((a, b) for b in range(len(species)) for a in range(b + 1)):
        pairs = [(j, k) for j, k in itertools.combinations(others, 2)
                 if sorted((species.index(sym[j]), species.index(sym[k]))) == [a, b]]
        for params, with_jk in ((G4, True), (G5, False)):
            for eta, zeta, lam in params:
                total = 0.0
                for j, k in pairs:
                    rij, rik = pos[j] - pos[center], pos[k] - pos[center]
                    dij, dik, djk = np.linalg.norm(rij), np.linalg.norm(rik), np.linalg.norm(rij - rik)
                    cos = rij @ rik / (dij * dik)
                    radial = dij**2 + dik**2 + (djk**2 if with_jk else 0.0)
                    term = 2 ** (1 - zeta) * (1 + lam * cos) ** zeta * np.exp(-eta * radial)
                    term *= fc(dij) * fc(dik) * (fc(djk) if with_jk else 1.0)
                    total += term
                out.append(total)
    return np.array(out)


@pytest.mark.parametrize("cutoff", ["cosine", "tanh3", "polynomial"])
def test_matches_direct_reference(molecule_ch3oh, cutoff):
    species = ["H", "C", "O"]
    d = acsf(species, r_cut=3.2, cutoff=cutoff)
    features = d.compute(molecule_ch3oh).features
    for center in range(len(molecule_ch3oh)):
        expected = reference_acsf(molecule_ch3oh, center, species, 3.2, cutoff)
        np.testing.assert_allclose(features[center], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("r_cut", [3.2, 2.5837])  # the second: breakpoint at no simple fraction
def test_tabulated_cutoff_with_a_breakpoint_matches_direct_reference(molecule_ch3oh, r_cut,
                                                                      checks):
    species = ["H", "C", "O"]
    d = acsf(species, r_cut=r_cut, cutoff={"name": "shifted_cosine", "width": 0.5})
    res = d.compute(molecule_ch3oh, gradients=True, strain_gradients=True)
    expected = np.array([reference_acsf(molecule_ch3oh, center, species, r_cut, "shifted_cosine")
                         for center in range(len(molecule_ch3oh))])
    assert np.abs(res.features - expected).max() <= 1e-8 * np.abs(expected).max()
    fd = checks.fd_gradients(d, molecule_ch3oh)
    assert checks.relative_error(res.dense_gradients(), fd) <= 1e-6
    assert checks.relative_error(res.strain_gradients, checks.fd_strain(d, molecule_ch3oh)) <= 1e-6


def test_all_pairs_convention_doubles_angular_terms(triclinic):
    base = acsf(["H", "O", "Si"]).compute(triclinic).features
    doubled = acsf(["H", "O", "Si"], convention="all_pairs").compute(triclinic).features
    angular = np.array([label[0] in ("G4", "G5") for label in acsf(["H", "O", "Si"]).feature_labels])
    np.testing.assert_array_equal(doubled[:, ~angular], base[:, ~angular])
    np.testing.assert_allclose(doubled[:, angular], 2 * base[:, angular], rtol=1e-15)


# --------------------------------------------------------------- derivatives


STRUCTURES = ["triclinic", "small_cell", "mixed_pbc", "molecule_ch3oh"]
SPECIES = {"triclinic": ["H", "O", "Si"], "small_cell": ["Si"], "mixed_pbc": ["H", "O"],
           "molecule_ch3oh": ["H", "C", "O"]}


@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("cutoff", ["cosine", "tanh3", {"name": "polynomial", "order": 3}])
def test_position_gradients_match_finite_differences(name, cutoff, request, checks):
    atoms = request.getfixturevalue(name)
    d = acsf(SPECIES[name], cutoff=cutoff)
    res = d.compute(atoms, gradients=True)
    expected = checks.fd_gradients(d, atoms)
    assert checks.relative_error(res.dense_gradients(), expected) <= 1e-6


@pytest.mark.parametrize("name", STRUCTURES)
def test_strain_gradients_match_finite_differences(name, request, checks):
    atoms = request.getfixturevalue(name)
    d = acsf(SPECIES[name], cutoff="tanh3")
    res = d.compute(atoms, strain_gradients=True)
    expected = checks.fd_strain(d, atoms)
    assert checks.relative_error(res.strain_gradients, expected) <= 1e-6


@pytest.mark.parametrize("name", STRUCTURES)
def test_at_points_gradients_match_finite_differences(name, request, checks):
    """Centres at points: positions with the points held, strain with them strained."""
    atoms = request.getfixturevalue(name)
    d = acsf(SPECIES[name], cutoff="tanh3")
    points = atoms.positions[:2] + [[0.4, -0.3, 0.2], [-0.5, 0.1, 0.6]]
    res = d.compute(atoms, centers=points, gradients=True, strain_gradients=True)
    np.testing.assert_array_equal(res.centers, points)
    assert (res.gradient_pairs[:, 1] < len(atoms)).all()
    assert res.features.any()
    assert checks.relative_error(res.dense_gradients(),
                                 checks.fd_gradients(d, atoms, centers=points)) <= 1e-6
    assert checks.relative_error(res.strain_gradients,
                                 checks.fd_strain(d, atoms, centers=points)) <= 1e-6


def test_at_points_invariant_under_rotation_translation_and_supercell(small_cell, checks):
    d = acsf(["Si"])
    points = np.array([[0.7, 0.5, 0.3], [1.9, 2.2, 0.4]])
    want = d.compute(small_cell, centers=points).features
    rotation = checks.random_rotation(3)
    turned = small_cell.copy()
    turned.set_cell(small_cell.cell[:] @ rotation.T, scale_atoms=False)
    turned.positions = small_cell.positions @ rotation.T + 1.5
    got = d.compute(turned, centers=points @ rotation.T + 1.5).features
    assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
    np.testing.assert_allclose(d.compute(small_cell * (2, 2, 1), centers=points).features, want,
                               rtol=0, atol=1e-12 * np.abs(want).max())


def test_gradients_sparse_layout_and_subset_of_centers(triclinic):
    d = acsf(["H", "O", "Si"])
    full = d.compute(triclinic, gradients=True, strain_gradients=True)
    pairs = full.gradient_pairs
    assert pairs.dtype == np.int64 and pairs.shape[1] == 2
    assert (np.diff(pairs[:, 0] * len(triclinic) + pairs[:, 1]) > 0).all()  # sorted, unique
    assert full.gradient_values.shape == (len(pairs), 3, d.n_features)
    # translation invariance: the gradients of one centre sum to zero over atoms
    summed = np.zeros((len(triclinic), 3, d.n_features))
    np.add.at(summed, pairs[:, 0], full.gradient_values)
    assert np.abs(summed).max() <= 1e-12 * np.abs(full.gradient_values).max()

    centers = [5, 2, 11]
    part = d.compute(triclinic, centers=centers, gradients=True, strain_gradients=True)
    np.testing.assert_array_equal(part.centers, centers)
    np.testing.assert_array_equal(part.features, full.features[centers])
    np.testing.assert_array_equal(part.dense_gradients(), full.dense_gradients()[centers])
    np.testing.assert_array_equal(part.strain_gradients, full.strain_gradients[centers])


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_reduced_result_keeps_consistent_gradients(triclinic, how, checks):
    d = acsf(["H", "O", "Si"])
    reduced = d.compute(triclinic, gradients=True, strain_gradients=True).reduce(how)
    dense = d.compute(triclinic, gradients=True).dense_gradients()
    scale = 1 / len(triclinic) if how == "mean" else 1.0
    np.testing.assert_allclose(reduced.dense_gradients()[0], dense.sum(axis=0) * scale,
                               rtol=1e-12, atol=1e-14)
    assert reduced.features.shape == (1, d.n_features)
    assert reduced.strain_gradients.shape == (1, 3, 3, d.n_features)


# ---------------------------------------------------------------- invariance


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_rotation_translation_invariance(molecule_ch3oh, triclinic, checks):
    d = acsf(["H", "C", "O"])
    base = d.compute(molecule_ch3oh).features
    moved = molecule_ch3oh.copy()
    moved.positions = moved.positions @ checks.random_rotation(0).T + [3.1, -2.0, 0.7]
    assert rel(d.compute(moved).features, base) <= 1e-12

    d = acsf(["H", "O", "Si"])
    base = d.compute(triclinic).features
    rotation = checks.random_rotation(1)
    turned = triclinic.copy()
    turned.set_cell(triclinic.cell[:] @ rotation.T, scale_atoms=False)
    turned.positions = triclinic.positions @ rotation.T + [0.3, 8.1, -4.0]  # also shifts images
    assert rel(d.compute(turned).features, base) <= 1e-12


def test_permutation_invariance(triclinic):
    d = acsf(["H", "O", "Si"])
    base = d.compute(triclinic, gradients=True, strain_gradients=True)
    order = np.random.default_rng(2).permutation(len(triclinic))
    shuffled = triclinic[order]
    res = d.compute(shuffled, gradients=True, strain_gradients=True)
    assert rel(res.features, base.features[order]) <= 1e-12
    dense = base.dense_gradients()[order][:, order]
    assert rel(res.dense_gradients(), dense) <= 1e-12
    assert rel(res.strain_gradients, base.strain_gradients[order]) <= 1e-12


@pytest.mark.parametrize("name", ["triclinic", "small_cell"])
def test_supercell_gives_the_same_features(name, request):
    atoms = request.getfixturevalue(name)
    d = acsf(SPECIES[name])
    base = d.compute(atoms, strain_gradients=True)
    big = d.compute(atoms * (2, 2, 2), strain_gradients=True)
    n = len(atoms)
    for k in range(8):
        assert rel(big.features[k * n:(k + 1) * n], base.features) <= 1e-12
        assert rel(big.strain_gradients[k * n:(k + 1) * n], base.strain_gradients) <= 1e-12


# ------------------------------------------------------- threads and batches


def test_results_identical_for_one_and_two_threads(triclinic):
    d = acsf(["H", "O", "Si"])
    big = triclinic * (2, 2, 1)
    one = d.compute(big, gradients=True, strain_gradients=True, n_threads=1)
    two = d.compute(big, gradients=True, strain_gradients=True, n_threads=2)
    np.testing.assert_array_equal(one.features, two.features)
    np.testing.assert_array_equal(one.gradient_pairs, two.gradient_pairs)
    np.testing.assert_array_equal(one.gradient_values, two.gradient_values)
    np.testing.assert_array_equal(one.strain_gradients, two.strain_gradients)


def test_features_with_and_without_gradients_agree(molecule_ch3oh, triclinic):
    # G4/G5 come from different loops with and without derivatives (same sums,
    # but exp and cos may round differently): equal to rounding
    d = acsf(["H", "C", "O", "Si"])
    for atoms in (molecule_ch3oh, triclinic, triclinic * (2, 1, 1)):
        plain = d.compute(atoms).features
        with_gradients = d.compute(atoms, gradients=True).features
        assert rel(with_gradients, plain) <= 1e-14


def test_list_of_structures_in_parallel(triclinic, small_cell):
    d = acsf(["H", "O", "Si"])
    structures = [triclinic, small_cell, triclinic * (1, 2, 1)]
    results = d.compute(structures, gradients=True, n_threads=2)
    assert isinstance(results, list) and len(results) == 3
    for atoms, res in zip(structures, results):
        single = d.compute(atoms, gradients=True)
        np.testing.assert_array_equal(res.features, single.features)
        np.testing.assert_array_equal(res.gradient_values, single.gradient_values)


def test_threads_are_shared_out_over_fewer_periodic_structures(triclinic, small_cell,
                                                                monkeypatch):
    d = acsf(["H", "O", "Si"])
    calls = []
    compute_one = type(d)._compute_one

    def recorded(self, atoms, **kwargs):
        calls.append(kwargs["n_threads"])
        return compute_one(self, atoms, **kwargs)

    monkeypatch.setattr(type(d), "batch_cell_atoms", 0)  # no batches of small cells here
    monkeypatch.setattr(type(d), "_compute_one", recorded)
    (alone,) = d.compute([triclinic], gradients=True, n_threads=4)
    pair = d.compute([triclinic, small_cell], n_threads=4)
    many = d.compute([triclinic, small_cell, triclinic], n_threads=2)
    # one structure: every thread on its kernel; two: two each; more than threads: one each
    assert calls == [4, 2, 2, 1, 1, 1]
    np.testing.assert_array_equal(alone.gradient_values,
                                  d.compute(triclinic, gradients=True, n_threads=1).gradient_values)
    np.testing.assert_array_equal(pair[1].features, many[1].features)


# ------------------------------------------------------- metadata and hypers


def test_hypers_round_trip_and_labels():
    import json

    d = acsf(["O", "H"], cutoff={"name": "polynomial", "order": 4}, convention="all_pairs")
    assert d.species == ["H", "O"]  # sorted by atomic number, as DScribe
    hypers = json.loads(json.dumps(d.hypers))
    again = atomdesc.descriptor_from_hypers(hypers)
    assert again == d and again.hypers == d.hypers
    assert len(d.feature_labels) == d.n_features == 2 * (1 + 3 + 2) + 3 * (4 + 3)
    assert d.feature_labels[:2] == (("G1", "H", 0), ("G2", "H", 0))
    assert d.feature_labels[-1] == ("G5", "O-O", 2)
    assert isinstance(atomdesc.ACSF(species=["H"], r_cut=3.0), atomdesc.Descriptor)
    assert atomdesc.ACSF(species=["H"], r_cut=3.0) == atomdesc.descriptor(
        "acsf", species=["H"], r_cut=3.0)


def test_molecules_and_small_cells_of_a_list_are_computed_together_bit_identically(triclinic):
    from ase.build import bulk, molecule

    d = acsf(["H", "C", "O", "Si"])
    silicon = bulk("Si", "diamond", 5.43, cubic=True)
    structures = [molecule("CH4"), triclinic, molecule("CH3CH2OH"), molecule("H2O"), silicon]
    for s in structures[::2]:
        s.rattle(0.02, seed=6)
    parts = d.compute_parts(structures, [0, 2])
    assert [part.indices for part in parts] == [[0, 2, 3], [1, 4]]  # one batch of each kind
    structures[3].positions += 500.0  # far from the origin: no effect
    results = d.compute(structures, gradients=True, strain_gradients=True, centers=[0, 2])
    for atoms, res in zip(structures, results):
        single = d.compute(atoms, gradients=True, strain_gradients=True, centers=[0, 2])
        np.testing.assert_array_equal(res.centers, [0, 2])
        assert res.n_atoms == len(atoms)
        np.testing.assert_array_equal(res.features, single.features)
        np.testing.assert_array_equal(res.gradient_pairs, single.gradient_pairs)
        np.testing.assert_array_equal(res.gradient_values, single.gradient_values)
        np.testing.assert_array_equal(res.strain_gradients, single.strain_gradients)
        assert res.hypers == d.hypers


def test_errors_in_a_list_name_the_structure():
    from ase.build import molecule

    d = acsf(["H", "C", "O"])
    bad = molecule("H2O")
    bad.positions[0, 0] = np.nan
    with pytest.raises(ValueError, match="structure 1: positions contain NaN"):
        d.compute([molecule("CH4"), bad])
    close = molecule("H2O")
    close.positions[2] = close.positions[1] + [1e-3, 0, 0]
    with pytest.raises(ValueError, match="structure 1: atom 1 is 0.001 Å from atom 2"):
        d.compute([molecule("CH4"), close])
    with pytest.raises(ValueError, match="structure 1: centers out of range"):
        d.compute([molecule("CH4"), molecule("H2O")], centers=[4])
    # the index is the one in the list given, past periodic structures and batches
    from ase.build import bulk

    crystal = bulk("C", "diamond", 3.57)
    with pytest.raises(ValueError, match="structure 3: positions contain NaN"):
        d.compute([crystal, molecule("CH4"), crystal, bad])
    close_cell = bulk("C", "diamond", 3.57)
    close_cell.positions[1] = close_cell.positions[0] + [1e-3, 0, 0]
    with pytest.raises(ValueError, match="structure 2: atom 0 is 0.001 Å from atom 1"):
        d.compute([crystal, molecule("CH4"), close_cell])  # in a batch of small cells
    nan_cell = crystal.copy()
    nan_cell.positions[0, 0] = np.nan
    with pytest.raises(ValueError, match="structure 3: positions contain NaN"):
        d.compute([crystal, molecule("CH4"), crystal, nan_cell])
    d_small_batches = acsf(["H", "C", "O"])
    d_small_batches.batch_atoms = 5  # CH4 fills a batch: the bad molecule is in the next
    with pytest.raises(ValueError, match="structure 2: atom 1 is 0.001 Å from atom 2"):
        d_small_batches.compute([molecule("CH4"), molecule("CH4"), close])
