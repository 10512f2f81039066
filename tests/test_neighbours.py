"""Neighbour lists: vesin's half list expanded in Fortran, checked against ASE."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list

from atomdesc import kernels
from atomdesc import neighbours as nbmod
from atomdesc.neighbours import check_kernel_index, compute_neighbours
from atomdesc.system import System, merge_cells, merge_molecules


def all_atoms(atoms):
    return np.arange(len(atoms), dtype=np.int64)


def entries(nb):
    """(centre atom, neighbour, shift) of every entry, as tuples."""
    centre = nb.centers[nb.center_of_entry]
    return [(int(c), int(j), tuple(int(s) for s in shift))
            for c, j, shift in zip(centre, nb.atoms, nb.shifts)]


def assert_matches_ase(atoms, r_cut):
    nb = compute_neighbours(System.from_atoms(atoms), r_cut, all_atoms(atoms))
    i, j, shifts, d, vectors = neighbor_list("ijSdD", atoms, r_cut)
    ours = entries(nb)
    theirs = [(int(a), int(b), tuple(int(s) for s in shift)) for a, b, shift in zip(i, j, shifts)]
    assert len(ours) == len(set(ours))
    assert set(ours) == set(theirs)
    # same pairs, so compare the values pair by pair
    where = {key: k for k, key in enumerate(theirs)}
    order = np.array([where[key] for key in ours], dtype=np.int64).reshape(-1)
    np.testing.assert_allclose(nb.distances, d[order], rtol=0, atol=1e-12)
    np.testing.assert_allclose(nb.vectors, vectors[order], rtol=0, atol=1e-12)
    # internal consistency, to the last bits (the x86-64-v3 kernels contract the
    # sum of squares with FMA, numpy does not)
    lengths = np.sqrt((nb.vectors**2).sum(axis=1))
    np.testing.assert_allclose(nb.distances, lengths, rtol=1e-15, atol=0)
    assert_well_formed(nb, len(atoms))
    return nb


def assert_well_formed(nb, n_atoms):
    n_entries = len(nb.distances)
    assert nb.start.dtype == np.int64 and nb.start.shape == (len(nb.centers) + 1,)
    assert nb.start[0] == 0 and nb.start[-1] == n_entries and (np.diff(nb.start) >= 0).all()
    assert nb.atoms.dtype == np.int64 and nb.atoms.shape == (n_entries,)
    assert nb.shifts.dtype == np.int64 and nb.shifts.shape == (n_entries, 3)
    assert nb.vectors.dtype == np.float64 and nb.vectors.shape == (n_entries, 3)
    assert nb.vectors.flags.c_contiguous
    assert nb.distances.dtype == np.float64 and nb.distances.shape == (n_entries,)
    if n_entries:
        assert nb.atoms.min() >= 0 and nb.atoms.max() < n_atoms
    # within a centre: by neighbour index, then by shift
    rows = nb.center_of_entry
    key = np.lexsort((nb.shifts[:, 2], nb.shifts[:, 1], nb.shifts[:, 0], nb.atoms, rows))
    np.testing.assert_array_equal(key, np.arange(n_entries))


def test_triclinic_matches_ase(triclinic):
    nb = assert_matches_ase(triclinic, 4.5)
    assert len(nb.distances) > 10 * len(triclinic)


def test_cell_smaller_than_cutoff_matches_ase():
    atoms = bulk("Cu", "fcc", a=3.6)  # one atom, primitive cell: every neighbour is an image
    atoms.rattle(0.01, seed=4)
    nb = assert_matches_ase(atoms, 7.0)
    assert (nb.atoms == 0).all() and len(nb.distances) > 100
    two = bulk("NaCl", "rocksalt", a=5.64)
    two.set_cell(two.cell[:] + [[0.0, 0.2, 0.1], [0.1, 0.0, -0.3], [0.2, 0.1, 0.0]],
                 scale_atoms=True)
    assert_matches_ase(two, 9.0)


def test_mixed_pbc_matches_ase():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 2))
    atoms.rattle(0.05, seed=5)
    atoms.pbc = [True, False, True]
    nb = assert_matches_ase(atoms, 5.0)
    assert (nb.shifts[:, 1] == 0).all()
    slab = atoms.copy()
    slab.pbc = [False, False, True]
    assert_matches_ase(slab, 6.0)


@pytest.mark.parametrize("pbc", [[False, False, True], [True, False, False]])
def test_periodic_along_one_axis_with_zero_cell_vectors_matches_ase(pbc):
    """As ase.build.nanotube makes them: only the periodic axis has a cell vector."""
    from ase.build import nanotube

    tube = nanotube(6, 0, length=2)
    tube.rattle(0.03, seed=2)
    if pbc[0]:  # the same tube along x
        tube.positions = tube.positions[:, [2, 0, 1]]
        tube.cell = [[tube.cell[2, 2], 0, 0], [0, 0, 0], [0, 0, 0]]
    tube.pbc = pbc
    assert np.count_nonzero(tube.cell.lengths()) == 1
    nb = assert_matches_ase(tube, 4.5)
    assert (nb.shifts[:, ~np.array(pbc)] == 0).all() and (nb.shifts != 0).any()


def test_molecule_matches_ase():
    atoms = molecule("CH3CH2OH")
    nb = assert_matches_ase(atoms, 2.5)
    assert (nb.shifts == 0).all()


def test_single_atom():
    alone = Atoms("Si", positions=[[0.5, 0.5, 0.5]])
    nb = compute_neighbours(System.from_atoms(alone), 4.0, all_atoms(alone))
    assert len(nb.distances) == 0
    assert_well_formed(nb, 1)
    periodic = Atoms("Si", positions=[[0.5, 0.5, 0.5]], cell=[2.5, 2.7, 2.9], pbc=True)
    nb = assert_matches_ase(periodic, 4.0)
    assert (nb.atoms == 0).all() and len(nb.distances) > 0


def test_no_neighbours():
    atoms = Atoms("H2O", positions=[[0, 0, 0], [5, 0, 0], [0, 6, 0]])
    nb = compute_neighbours(System.from_atoms(atoms), 3.0, all_atoms(atoms))
    assert len(nb.distances) == 0
    np.testing.assert_array_equal(nb.start, np.zeros(4))
    assert_well_formed(nb, 3)
    i, _ = neighbor_list("ij", atoms, 3.0)
    assert len(i) == 0
    box = Atoms("H2", positions=[[0, 0, 0], [5, 5, 5]], cell=[10, 10, 10], pbc=True)
    nb = compute_neighbours(System.from_atoms(box), 3.0, all_atoms(box))
    assert len(nb.distances) == 0
    assert_well_formed(nb, 2)


def test_selected_and_repeated_centres_are_rows_of_the_full_list(triclinic):
    system = System.from_atoms(triclinic)
    full = compute_neighbours(system, 4.5, all_atoms(triclinic))
    for centers in ([5, 2, 9], [3, 3, 0, 3], [13]):
        centers = np.array(centers, dtype=np.int64)
        nb = compute_neighbours(system, 4.5, centers)
        assert_well_formed(nb, len(triclinic))
        for row, c in enumerate(centers):
            a, b = full.start[c], full.start[c + 1]
            x, y = nb.start[row], nb.start[row + 1]
            np.testing.assert_array_equal(nb.atoms[x:y], full.atoms[a:b])
            np.testing.assert_array_equal(nb.shifts[x:y], full.shifts[a:b])
            np.testing.assert_array_equal(nb.vectors[x:y], full.vectors[a:b])
            np.testing.assert_array_equal(nb.distances[x:y], full.distances[a:b])


def test_reverse_entries_are_exact_negations(triclinic):
    nb = compute_neighbours(System.from_atoms(triclinic), 4.5, all_atoms(triclinic))
    where = {key: k for k, key in enumerate(entries(nb))}
    for k, (i, j, shift) in enumerate(entries(nb)):
        back = where[(j, i, tuple(-s for s in shift))]
        np.testing.assert_array_equal(nb.vectors[back], -nb.vectors[k])
        assert nb.distances[back] == nb.distances[k]


def test_labels_follow_the_neighbours(triclinic):
    labels = np.arange(len(triclinic), dtype=np.int32) * 7 + 3
    nb = compute_neighbours(System.from_atoms(triclinic), 4.5, np.array([4, 1]),
                            atom_labels=labels)
    np.testing.assert_array_equal(nb.labels, labels[nb.atoms])
    assert compute_neighbours(System.from_atoms(triclinic), 4.5, np.array([4])).labels is None


def test_molecules_in_a_batch_get_their_own_lists():
    mols = [molecule("CH4"), molecule("H2O"), molecule("C6H6")]
    merged = merge_molecules(mols)
    nb = compute_neighbours(merged, 3.0, np.arange(len(merged)))
    assert_well_formed(nb, len(merged))
    for m, atoms in enumerate(mols):
        alone = compute_neighbours(System.from_atoms(atoms), 3.0, all_atoms(atoms))
        first, last = merged.fragments[m], merged.fragments[m + 1]
        a, b = nb.start[first], nb.start[last]
        np.testing.assert_array_equal(nb.atoms[a:b] - first, alone.atoms)
        np.testing.assert_array_equal(nb.vectors[a:b], alone.vectors)
        np.testing.assert_array_equal(nb.distances[a:b], alone.distances)
        np.testing.assert_array_equal(nb.start[first:last + 1] - a, alone.start)


def test_cells_in_a_batch_get_their_own_lists(triclinic, small_cell, mixed_pbc):
    cells = [triclinic, small_cell, mixed_pbc]
    merged = merge_cells(cells)
    assert merged.is_periodic and merged.parts is not None
    assert len(merged) == len(triclinic) + 2 + len(mixed_pbc)
    labels = np.arange(len(merged), dtype=np.int32) * 3
    picked = [np.array([0, 4, 13]), np.array([1]), all_atoms(mixed_pbc)]  # centres of each
    centers = np.concatenate([c + first for c, first in zip(picked, merged.fragments)])
    nb = compute_neighbours(merged, 4.5, centers, atom_labels=labels)
    assert_well_formed(nb, len(merged))
    row = 0
    for k, atoms in enumerate(cells):
        first = merged.fragments[k]
        alone = compute_neighbours(System.from_atoms(atoms), 4.5, picked[k],
                                   atom_labels=labels[first:merged.fragments[k + 1]])
        rows = slice(row, row + len(picked[k]))
        a, b = nb.start[row], nb.start[row + len(picked[k])]
        np.testing.assert_array_equal(nb.start[rows] - a, alone.start[:-1])
        np.testing.assert_array_equal(nb.atoms[a:b] - first, alone.atoms)
        for field in ("vectors", "distances", "shifts", "labels"):
            np.testing.assert_array_equal(getattr(nb, field)[a:b], getattr(alone, field))
        row += len(picked[k])
    assert row == len(centers) and nb.start[-1] == len(nb.atoms)


def test_cells_in_a_batch_are_checked_each(triclinic, small_cell):
    close = small_cell.copy()
    close.positions[1] = close.positions[0] + [1e-3, 0, 0]
    merged = merge_cells([triclinic, close])
    with pytest.raises(ValueError, match="structure 1: atom 0 is 0.001 Å from atom 1"):
        compute_neighbours(merged, 4.5, np.arange(len(merged)))
    bad = small_cell.copy()
    bad.cell[0] = 0.0
    with pytest.raises(ValueError, match="structure 1: the cell vector along periodic axis"):
        merge_cells([triclinic, bad])
    merged = merge_cells([triclinic, small_cell])
    with pytest.raises(ValueError, match="structure by structure"):
        compute_neighbours(merged, 4.5, np.array([len(triclinic), 0]))  # second cell first


def test_merged_cells_are_each_as_validated_alone(triclinic, small_cell, mixed_pbc):
    cells = [triclinic, small_cell, mixed_pbc]
    merged = merge_cells(cells)
    for part, atoms in zip(merged.parts, cells):
        alone = System.from_atoms(atoms)
        for field in ("positions", "numbers", "cell", "pbc"):
            np.testing.assert_array_equal(getattr(part, field), getattr(alone, field))
            assert getattr(part, field).dtype == getattr(alone, field).dtype
        assert part.positions.flags.c_contiguous
    np.testing.assert_array_equal(merged.fragments, [0, 14, 16, 16 + len(mixed_pbc)])

    class Duck:  # not an Atoms: pbc as one bool, which from_atoms takes
        positions, numbers = small_cell.positions, small_cell.numbers
        cell, pbc = small_cell.cell[:], True

    ducked = merge_cells([triclinic, Duck()])
    np.testing.assert_array_equal(ducked.parts[1].pbc, [True, True, True])
    bad_cell = small_cell.copy()
    bad_cell.cell[1, 1] = np.nan
    bad_numbers = small_cell.copy()
    bad_numbers.numbers[0] = 0
    for bad, match in ((bad_cell, "structure 1: the cell contains NaN"),
                       (bad_numbers, "structure 1: atomic numbers must be")):
        with pytest.raises(ValueError, match=match):
            merge_cells([triclinic, bad, small_cell])


def test_small_molecules_take_all_pairs_with_vesins_result(monkeypatch):
    mols = [molecule("CH4"), molecule("C60"), molecule("H2O")] + [molecule("C6H6")] * 6
    mols[1].rattle(0.01, seed=3)
    systems = [merge_molecules(mols)] + [System.from_atoms(m) for m in mols[:4]]
    # C60 alone has too many pairs per atom, the batch does not: both routes are covered
    sizes = [np.diff(s.fragments if s.fragments is not None else [0, len(s)]) for s in systems]
    routes = [(n * (n - 1) // 2).sum() <= nbmod.ALL_PAIRS_PER_ATOM * n.sum() for n in sizes]
    assert routes[0] and not routes[2] and routes[1]
    for system in systems:
        ours = compute_neighbours(system, 4.0, np.arange(len(system)))
        with monkeypatch.context() as m:
            m.setattr(nbmod, "ALL_PAIRS_PER_ATOM", -1)  # vesin for everything
            theirs = compute_neighbours(system, 4.0, np.arange(len(system)))
        for name in ("start", "atoms", "vectors", "distances", "shifts"):
            np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))


@pytest.mark.parametrize("repeat, r_cut", [((3, 3, 3), 7.0), ((2, 1, 1), 14.0)])
def test_threads_give_identical_lists(repeat, r_cut):
    # enough pairs for the expansion to use 3 threads, then 2 with many images
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=6)
    atoms.set_cell(atoms.cell[:] + [[0, 0.4, 0.2], [0.3, 0, 0], [0.5, -0.2, 0]], scale_atoms=True)
    system = System.from_atoms(atoms)
    centers, labels = all_atoms(atoms), np.arange(len(atoms)) % 5
    one = compute_neighbours(system, r_cut, centers, n_threads=1, atom_labels=labels)
    assert_well_formed(one, len(atoms))
    assert len(one.distances) > 2 * 4096
    for n_threads in (2, 3, 4, 0):
        other = compute_neighbours(system, r_cut, centers, n_threads=n_threads, atom_labels=labels)
        for name in ("start", "atoms", "vectors", "distances", "shifts", "labels"):
            np.testing.assert_array_equal(getattr(one, name), getattr(other, name))


def test_too_close_atoms_raise():
    pair = Atoms("H2", positions=[[0, 0, 0], [0.005, 0, 0]])
    with pytest.raises(ValueError, match="atom 0 is 0.005 Å from atom 1, closer than min_distance"):
        compute_neighbours(System.from_atoms(pair), 3.0, np.array([1]))
    across = Atoms("H2", positions=[[0.001, 1, 1], [3.995, 1, 1]], cell=[4, 4, 4], pbc=True)
    with pytest.raises(ValueError, match="atom 0 is 0.006 Å from atom 1"):
        compute_neighbours(System.from_atoms(across), 3.0, np.array([0]))
    mols = [molecule("H2O"), Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.001]])]
    with pytest.raises(ValueError, match="structure 1: atom 0 is 0.001 Å from atom 1"):
        compute_neighbours(merge_molecules(mols), 3.0, np.arange(5))
    # with a smaller min_distance the same pair is an ordinary neighbour
    nb = compute_neighbours(System.from_atoms(pair), 3.0, np.array([0]), min_distance=0.001)
    assert len(nb.distances) == 1


def test_centres_out_of_range_are_refused(triclinic):
    system = System.from_atoms(triclinic)
    for centers in ([-1], [0, 14], [[0, 1]]):
        with pytest.raises(ValueError, match="centers must be"):
            compute_neighbours(system, 4.5, np.array(centers))


def _kernel_arrays(n_atoms=3, n_pairs=2, n_centers=3, n_out=4):
    positions = np.arange(3.0 * n_atoms).reshape(n_atoms, 3)
    return dict(
        pos=positions.T, box=np.eye(3).T,
        pairs=np.array([[0, 1], [1, 2]][:n_pairs], dtype=np.int64).T,
        hs=np.zeros((n_pairs, 3), dtype=np.int32).T,
        row=np.arange(1, n_atoms + 1, dtype=np.int32)[:n_atoms] * (np.arange(n_atoms) < n_centers),
        atom_label=np.ones(n_atoms, dtype=np.int32),
        cut=np.inf,
        start=np.zeros(n_centers + 1, dtype=np.int64),
        atoms=np.full(n_out, -7, dtype=np.int64),
        vec=np.zeros((n_out, 3)).T,
        dist=np.zeros(n_out),
        shifts=np.zeros((n_out, 3), dtype=np.int64).T,
        label=np.zeros(n_out, dtype=np.int32),
    )


def test_kernel_refuses_bad_indices_and_short_outputs():
    half_to_full = kernels.fortran.half_to_full
    args = _kernel_arrays()
    n_kept, d_min, a, b, status = half_to_full(**args)
    assert status == 0 and n_kept == 2 and (a, b) == (0, 1)
    assert d_min == pytest.approx(np.sqrt(27.0))
    np.testing.assert_array_equal(args["start"], [0, 1, 3, 4])
    np.testing.assert_array_equal(args["atoms"], [1, 0, 2, 1])

    bad = _kernel_arrays()
    bad["pairs"][1, 1] = 3  # atom 3 of 3
    assert half_to_full(**bad)[-1] == 1
    bad = _kernel_arrays()
    bad["pairs"][0, 0] = -1
    assert half_to_full(**bad)[-1] == 1
    bad = _kernel_arrays()
    bad["row"][2] = 4  # a row past the centres
    assert half_to_full(**bad)[-1] == 1
    short = _kernel_arrays(n_out=3)
    assert half_to_full(**short)[-1] == 2
    np.testing.assert_array_equal(short["atoms"], [-7, -7, -7])  # nothing written


def test_bad_arrays_from_vesin_never_reach_fortran(triclinic, monkeypatch):
    real = nbmod._half_list

    class Wrong:
        def __init__(self, change):
            self.change = change

        def compute(self, *args, **kwargs):
            pairs, shifts = real(4.5, 1).compute(*args, **kwargs)
            return self.change(pairs.copy(), shifts.copy())

    def kernel(*args, **kwargs):
        raise AssertionError("half_to_full was called")

    monkeypatch.setattr(nbmod.kernels, "fortran", type("K", (), {"half_to_full": kernel,
                                                                  "max_threads": lambda: 1}))
    system = System.from_atoms(triclinic)
    for change in (
        lambda p, s: (p.astype(np.int32), s),  # narrower indices
        lambda p, s: (p, s.astype(np.int64)),  # wider shifts
        lambda p, s: (p[:-1], s),  # fewer pairs than shifts
        lambda p, s: (p[:, :1], s),  # one column
        lambda p, s: (np.asfortranarray(p), s),  # transposed memory
    ):
        monkeypatch.setattr(nbmod, "_half_list", lambda cutoff, n, c=change: Wrong(c))
        with pytest.raises(RuntimeError, match="internal error"):
            compute_neighbours(system, 4.5, all_atoms(triclinic))


def test_more_entries_than_the_kernels_index_are_refused():
    limit = np.iinfo(np.int32).max
    check_kernel_index(limit)
    check_kernel_index(limit - 5, others=5)
    with pytest.raises(ValueError, match="more than the kernels index"):
        check_kernel_index(limit + 1)
    with pytest.raises(ValueError, match=f"{limit - 5} neighbour pairs"):
        check_kernel_index(limit - 5, others=6)


@pytest.mark.parametrize("name", ["small cell", "large cell", "triclinic", "slab"])
def test_neighbour_estimate_is_close_to_the_count(name, triclinic):
    """The guard against flooding the neighbour list estimates the pairs from the density
    for large cells (a count of every atom pair would refuse any cell above ~30 000 atoms)."""
    from ase.build import fcc111

    atoms = {"small cell": bulk("Si", "diamond", a=5.431, cubic=True),
             "large cell": bulk("Si", "diamond", a=5.431, cubic=True) * (5, 5, 5),
             "triclinic": triclinic,
             "slab": fcc111("Cu", size=(4, 4, 4), vacuum=8.0)}[name]
    system = System.from_atoms(atoms)
    r_cut = 5.0
    count = len(compute_neighbours(system, r_cut, np.arange(len(system))).distances)
    box = nbmod.box_for_neighbour_list(system)
    estimate, _ = nbmod.estimated_neighbours(system, box, r_cut)
    assert 0.5 <= estimate * len(system) / count <= 2.0


def test_large_cells_are_not_refused():
    system = System.from_atoms(bulk("Si", "diamond", a=5.431, cubic=True) * (20, 20, 20))
    assert len(system) == 64000
    box = nbmod.box_for_neighbour_list(system)
    nbmod._check_periodic_images(system, box, 6.0, 1e-2)  # no error: ~1.1 million pairs


def test_cells_flooding_the_neighbour_list_are_refused(monkeypatch):
    monkeypatch.setattr(nbmod, "pair_limit", lambda: 1000)
    atoms = Atoms("H", cell=np.eye(3) * 0.5, pbc=True)  # ~4 000 images of itself within 5 Å: ~2 000 pairs
    with pytest.raises(ValueError, match="neighbour pairs, more than fit in memory"):
        compute_neighbours(System.from_atoms(atoms), 5.0, np.arange(1))
    monkeypatch.undo()
    assert len(compute_neighbours(System.from_atoms(atoms), 5.0, np.arange(1)).distances) > 1000
