"""Neighbour lists (from vesin) in the CSR form every kernel takes."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import vesin

from . import kernels
from .output_memory import physical_memory
from .system import System, box_for_neighbour_list, face_normals

#: Atoms closer than this (in Å) are rejected as overlapping.
DEFAULT_MIN_DISTANCE = 1e-2

_INT32_MAX = np.iinfo(np.int32).max


def check_kernel_index(n_entries: int, others: int = 0) -> None:
    """Refuse ``n_entries`` neighbour entries (plus ``others`` indexed with them) that the
    kernels' 32-bit indices cannot address.

    :raises ValueError: naming the count, and what to do about it.
    """
    if n_entries + others > _INT32_MAX:
        raise ValueError(
            f"{n_entries} neighbour pairs are more than the kernels index; "
            "split the centres into smaller batches"
        )


@dataclass(frozen=True)
class Neighbours:
    """The neighbours of selected centres within a cutoff.

    Entries ``start[c]:start[c + 1]`` belong to ``centers[c]``; each entry has
    the neighbour's atom index, the vector ``r_j + shift - r_i`` and its
    length. A periodic image is an entry of its own (possibly of the centre
    itself in a small cell). Within a centre, entries are sorted by neighbour
    index, then by cell shift: the order depends only on the structure, never
    on the number of threads.
    """

    centers: np.ndarray  # (n_centers,) int64
    start: np.ndarray  # (n_centers + 1,) int64
    atoms: np.ndarray  # (n_entries,) int64
    vectors: np.ndarray  # (n_entries, 3) float64
    distances: np.ndarray  # (n_entries,) float64
    shifts: np.ndarray  # (n_entries, 3) int64
    #: ``atom_labels[atoms]`` when :func:`compute_neighbours` was given atom labels
    labels: np.ndarray | None = None  # (n_entries,) int32

    @property
    def center_of_entry(self) -> np.ndarray:
        """Row (index into ``centers``) of every entry."""
        return np.repeat(np.arange(len(self.centers)), np.diff(self.start))


def compute_neighbours(
    system: System,
    r_cut: float,
    centers: np.ndarray,
    *,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    n_threads: int = 1,
    atom_labels: np.ndarray | None = None,
) -> Neighbours:
    """All neighbours within ``r_cut`` of each centre (full list, images included).

    vesin finds every pair once (a half list, with ``n_threads`` threads, 0 for
    the kernels' default; small molecules list all their pairs instead); the
    Fortran routine ``half_to_full`` keeps those within ``r_cut`` and writes both
    directions of each pair into the rows of the centres, in a fixed order (with
    the same threads; the lists do not depend on their number).

    A system of several periodic structures (``system.parts``) gets each one's
    neighbours in its own cell, joined; its centres must come structure by structure.

    :param atom_labels: optional (n_atoms,) integers, copied to ``labels`` for
        every entry (e.g. the species index of each neighbour).
    :raises ValueError: if two atoms (or an atom and its own periodic image)
        are closer than ``min_distance``.
    """
    if system.parts is not None:
        return _neighbours_of_parts(system, r_cut, centers, min_distance, n_threads, atom_labels)
    box = box_for_neighbour_list(system)
    _check_periodic_images(system, box, r_cut, min_distance)
    n_atoms = len(system)
    centers = np.asarray(centers, dtype=np.int64)
    if centers.ndim != 1 or (len(centers) and (centers.min() < 0 or centers.max() >= n_atoms)):
        raise ValueError(f"centers must be a 1-D list of atom indices below {n_atoms}")
    labels = (np.zeros(n_atoms, dtype=np.int32) if atom_labels is None
              else np.asarray(atom_labels, dtype=np.int32))
    row = np.zeros(n_atoms, dtype=np.int32)
    row[centers] = np.arange(1, len(centers) + 1, dtype=np.int32)
    if (row[centers] != np.arange(1, len(centers) + 1)).any():  # a centre given twice
        return _repeated_centers(system, r_cut, centers, min_distance, n_threads, atom_labels)

    if system.is_periodic:
        pairs, shifts = _half_list(r_cut, n_threads).compute(
            system.positions, box, system.pbc, quantities="PS", copy=False)
        cut = np.inf
    else:
        pairs, shifts = _molecular_half_list(system, r_cut, n_threads)
        cut = float(r_cut)  # the exact test, on the original positions
    n_pairs = len(pairs)
    check_kernel_index(2 * n_pairs)
    n_max = max(2 * n_pairs, 1)  # f2py refuses empty arrays sized by a hidden dimension
    start = np.zeros(len(centers) + 1, dtype=np.int64)
    atoms = np.empty(n_max, dtype=np.int64)
    vectors = np.empty((n_max, 3))
    distances = np.empty(n_max)
    entry_shifts = np.empty((n_max, 3), dtype=np.int64)
    entry_labels = np.empty(n_max, dtype=np.int32)
    if n_pairs:
        if pairs.dtype == np.uint64:
            pairs = pairs.view(np.int64)  # indices < n_atoms: same bits
        ok = (
            pairs.dtype == np.int64 and pairs.shape == (n_pairs, 2)
            and pairs.flags.c_contiguous
            and shifts.dtype == np.int32 and shifts.shape == (n_pairs, 3)
            and shifts.flags.c_contiguous
            and system.positions.dtype == np.float64
            and system.positions.shape == (n_atoms, 3)
            and system.positions.flags.c_contiguous
            and box.dtype == np.float64 and box.shape == (3, 3) and box.flags.c_contiguous
            and labels.shape == (n_atoms,)
        )
        if not ok:  # a change in vesin or a bug here: never hand Fortran such arrays
            raise RuntimeError("internal error: unexpected neighbour list arrays from vesin")
        n_kept, d_min, a, b, status = kernels.fortran.half_to_full(
            system.positions.T, box.T, pairs.T, shifts.T, row, labels, cut,
            start, atoms, vectors.T, distances, entry_shifts.T, entry_labels, n_threads,
        )
        if status != 0:
            raise RuntimeError(f"internal error: half_to_full failed (status {status})")
        if n_kept and d_min < min_distance:
            _raise_too_close(system, int(a), int(b), d_min, min_distance)
    n_entries = int(start[-1])
    arrays = [atoms, vectors, distances, entry_shifts, entry_labels]
    if n_entries < n_max // 2:  # few centres: do not keep the unused tail alive
        arrays = [array[:n_entries].copy() for array in arrays]
    else:
        arrays = [array[:n_entries] for array in arrays]
    atoms, vectors, distances, entry_shifts, entry_labels = arrays
    return Neighbours(centers, start, atoms, vectors, distances, entry_shifts,
                      None if atom_labels is None else entry_labels)


def _repeated_centers(system, r_cut, centers, min_distance, n_threads, atom_labels):
    """Neighbours when a centre is listed more than once: those of each distinct centre, copied."""
    unique, inverse = np.unique(centers, return_inverse=True)
    nb = compute_neighbours(system, r_cut, unique, min_distance=min_distance,
                            n_threads=n_threads, atom_labels=atom_labels)
    counts = np.diff(nb.start)[inverse]
    start = np.zeros(len(centers) + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    # entry indices of the selected centres, in the order of `centers`
    take = np.repeat(nb.start[inverse] - start[:-1], counts) + np.arange(start[-1])
    return Neighbours(
        centers=centers,
        start=start,
        atoms=nb.atoms[take],
        vectors=nb.vectors[take],
        distances=nb.distances[take],
        shifts=nb.shifts[take],
        labels=None if nb.labels is None else nb.labels[take],
    )


def point_neighbours(system: System, r_cut: float, points: np.ndarray, *,
                     min_distance: float = DEFAULT_MIN_DISTANCE, n_threads: int = 1,
                     atom_labels: np.ndarray | None = None) -> Neighbours:
    """The atoms within ``r_cut`` of each of ``points`` ((n, 3), Cartesian; images included).

    The points join the atoms as extra atoms ``len(system) + k`` (their
    ``centers``), so that vesin lists them as it lists atoms; entries of other
    points are dropped. Atoms are not checked against each other here (no atom is
    a centre).

    :raises ValueError: if a point is closer than ``min_distance`` to an atom (its
        index is then the centre to give).
    """
    n_atoms, n_points = len(system), len(points)
    with_points = System(np.concatenate([system.positions, points]),
                         np.concatenate([system.numbers, np.zeros(n_points, dtype=np.int64)]),
                         system.cell, system.pbc)
    labels = None if atom_labels is None else np.concatenate(
        [np.asarray(atom_labels, dtype=np.int32), np.zeros(n_points, dtype=np.int32)])
    # points may coincide with each other; each is checked against the atoms below
    nb = compute_neighbours(with_points, r_cut, n_atoms + np.arange(n_points), min_distance=0.0,
                            n_threads=n_threads, atom_labels=labels)
    keep = nb.atoms < n_atoms
    close = keep & (nb.distances < min_distance)
    if close.any():
        entry = int(np.flatnonzero(close)[0])
        point = int(nb.center_of_entry[entry])
        raise ValueError(
            f"center point {point} is {nb.distances[entry]:.3g} Å from atom {nb.atoms[entry]}, "
            f"closer than min_distance={min_distance} Å: give that atom's index as the centre"
        )
    start = np.zeros(n_points + 1, dtype=np.int64)
    np.cumsum(np.bincount(nb.center_of_entry[keep], minlength=n_points), out=start[1:])
    return Neighbours(
        centers=nb.centers, start=start, atoms=nb.atoms[keep], vectors=nb.vectors[keep],
        distances=nb.distances[keep], shifts=nb.shifts[keep],
        labels=None if nb.labels is None else nb.labels[keep],
    )


def _neighbours_of_parts(system: System, r_cut: float, centers: np.ndarray, min_distance: float,
                         n_threads: int, atom_labels: np.ndarray | None) -> Neighbours:
    """:func:`compute_neighbours` of each part of ``system`` (see :func:`merge_cells`) for
    its centres, joined in the numbering of the whole: the lists are those of each
    structure alone, bit for bit."""
    assert system.parts is not None and system.fragments is not None
    first_atom = system.fragments
    centers = np.asarray(centers, dtype=np.int64)
    part_of = np.searchsorted(first_atom, centers, side="right") - 1
    if centers.ndim != 1 or (len(centers) and (centers.min() < 0 or centers.max() >= len(system)
                                               or (np.diff(part_of) < 0).any())):
        raise ValueError(f"centers must be a 1-D list of atom indices below {len(system)}, "
                         "structure by structure")
    row_start = np.searchsorted(part_of, np.arange(len(system.parts) + 1)).tolist()
    lists, first = [], first_atom.tolist()
    for k, part in enumerate(system.parts):
        if row_start[k] == row_start[k + 1]:
            continue
        labels = None if atom_labels is None else atom_labels[first[k]:first[k + 1]]
        try:
            nb = compute_neighbours(part, r_cut, centers[row_start[k]:row_start[k + 1]] - first[k],
                                    min_distance=min_distance, n_threads=n_threads,
                                    atom_labels=labels)
        except ValueError as exc:
            raise ValueError(f"structure {k}: {exc}") from None
        lists.append((nb, first[k], int(nb.start[-1])))
    if not lists:  # no centres
        return Neighbours(centers, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                          np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3), dtype=np.int64),
                          None if atom_labels is None else np.zeros(0, dtype=np.int32))
    start = np.zeros(len(centers) + 1, dtype=np.int64)
    np.cumsum(np.concatenate([np.diff(nb.start) for nb, _, _ in lists]), out=start[1:])

    def joined(field: str) -> np.ndarray:
        return np.concatenate([getattr(nb, field)[:n] for nb, _, n in lists])

    return Neighbours(
        centers=centers, start=start,
        atoms=np.concatenate([nb.atoms[:n] + atom for nb, atom, n in lists]),
        vectors=joined("vectors"), distances=joined("distances"), shifts=joined("shifts"),
        labels=None if atom_labels is None else joined("labels"),
    )


def _raise_too_close(system: System, a: int, b: int, d: float, min_distance: float) -> None:
    where = ""
    if system.fragments is not None:  # name the molecule and its own atom indices
        molecule = int(np.searchsorted(system.fragments, a, side="right")) - 1
        a, b = a - system.fragments[molecule], b - system.fragments[molecule]
        where = f"structure {molecule}: "
    what = "its own periodic image" if a == b else f"atom {b}"
    raise ValueError(
        f"{where}atom {a} is {d:.3g} Å from {what}, closer than min_distance="
        f"{min_distance} Å (overlapping atoms)"
    )


_CALCULATORS = threading.local()


def _half_list(cutoff: float, n_threads: int) -> vesin.NeighborList:
    """vesin's half-list calculator for this cutoff, one per Python thread (they are reusable,
    but not to be shared by threads: the arrays of ``copy=False`` live inside them)."""
    if n_threads <= 0:
        n_threads = kernels.max_threads()
    cache = getattr(_CALCULATORS, "cache", None)
    if cache is None:
        cache = _CALCULATORS.cache = {}
    key = (float(cutoff), int(n_threads))
    calculator = cache.get(key)
    if calculator is None:
        if len(cache) >= 8:
            cache.clear()
        calculator = cache[key] = vesin.NeighborList(
            cutoff=float(cutoff), full_list=False, sorted=False, n_threads=int(n_threads))
    return calculator


#: Non-periodic systems whose molecules give at most this many candidate pairs per
#: atom (molecules of up to 33 atoms) take every pair within each molecule instead of
#: vesin's search: for small molecules that is a few array operations against a cell list.
ALL_PAIRS_PER_ATOM = 16


def _molecular_half_list(system: System, r_cut: float, n_threads: int):
    """Pairs of a non-periodic system (or of several molecules at once), each once.

    Small molecules give every pair of atoms within each molecule; otherwise
    molecules given together are laid out side by side, far apart, for one
    vesin call. Either way ``half_to_full`` keeps the pairs closer than
    ``r_cut``, recomputing vectors and distances from the original positions,
    so a molecule gets bit-identical neighbours alone or in a batch, by either
    route.
    """
    positions = system.positions
    fragments = (system.fragments if system.fragments is not None
                 else np.array([0, len(positions)], dtype=np.int64))
    sizes = np.diff(fragments)
    if int((sizes * (sizes - 1) // 2).sum()) <= ALL_PAIRS_PER_ATOM * len(positions):
        return _pairs_within_fragments(fragments, sizes)
    if len(fragments) > 2:
        fragment = np.repeat(np.arange(len(sizes)), sizes)
        lowest = np.minimum.reduceat(positions, fragments[:-1], axis=0)
        extent = (np.maximum.reduceat(positions, fragments[:-1], axis=0) - lowest).max()
        spacing = extent + 2.0 * r_cut + 1.0
        laid_out = positions - lowest[fragment]
        laid_out[:, 0] += spacing * fragment
    else:
        laid_out = positions
    # a hair beyond r_cut, then the exact test on the original positions
    calculator = _half_list(float(r_cut) * (1 + 1e-9) + 1e-9, n_threads)
    return calculator.compute(laid_out, np.zeros((3, 3)), False, quantities="PS", copy=False)


def _pairs_within_fragments(fragments: np.ndarray, sizes: np.ndarray):
    """Every pair (a, b), a < b, of atoms of the same fragment, and zero shifts (vesin's form)."""
    atoms = np.arange(fragments[-1], dtype=np.int64)
    partners = np.repeat(fragments[1:], sizes) - 1 - atoms  # later atoms of the same fragment
    n_pairs = int(partners.sum())
    a = np.repeat(atoms, partners)
    # b runs a + 1, a + 2, ... within each atom's group of pairs
    offset = np.arange(n_pairs, dtype=np.int64) - np.repeat(np.cumsum(partners) - partners, partners)
    pairs = np.stack([a, a + 1 + offset], axis=1)
    return pairs, np.zeros((n_pairs, 3), dtype=np.int32)


#: Bytes one neighbour pair costs, from vesin's list to the kernels' inputs (both directions).
BYTES_PER_PAIR = 200


def pair_limit() -> int:
    """Most neighbour pairs (each counted once) a call may build: what half of this
    machine's memory holds at :data:`BYTES_PER_PAIR` each."""
    return physical_memory() // 2 // BYTES_PER_PAIR


def _check_periodic_images(system: System, box: np.ndarray, r_cut: float,
                           min_distance: float) -> None:
    """Reject cells whose images overlap or would flood the neighbour list, before building it.

    ``box`` is :func:`box_for_neighbour_list` of the system.
    """
    if not system.is_periodic:
        return
    geometry = _box_geometry(box)
    for axis, height in enumerate(geometry[0]):
        if system.pbc[axis] and height < min_distance:
            raise ValueError(
                f"the cell is {height:.3g} Å thin along periodic axis {axis}: every atom overlaps "
                f"its own periodic image (closer than min_distance={min_distance} Å)"
            )
    within, images = _estimated_neighbours(system, r_cut, *geometry)
    pairs = 0.5 * len(system) * within
    limit = pair_limit()
    if pairs > limit:
        raise ValueError(
            f"r_cut={r_cut} Å reaches about {within:.3g} atoms from each atom of this cell "
            f"({images:.3g} periodic images of it): ~{pairs:.3g} neighbour pairs, more than fit "
            f"in memory ({limit:.3g}); use a smaller cutoff or a larger cell"
        )


def _box_geometry(box: np.ndarray) -> tuple[list[float], list[list[float]], float]:
    """Distance between the two faces of the box across each axis, the faces' normals and
    the volume (plain floats: numpy's overhead on 3-vectors would be most of the cost, on
    every call)."""
    normals = face_normals(box)
    volume = abs(sum(a * b for a, b in zip(box[0].tolist(), normals[0])))
    lengths = [math.sqrt(sum(x * x for x in normal)) for normal in normals]
    return [volume / length if length > 0 else 0.0 for length in lengths], normals, volume


def estimated_neighbours(system: System, box: np.ndarray, r_cut: float) -> tuple[float, float]:
    """About how many atoms lie within ``r_cut`` of an atom of a periodic system, and how many
    periodic images of the cell that reach spans.

    At most every atom of every image cell within reach (tight for small cells); about the
    mean density times the sphere (large cells), the density taken in the volume the atoms
    fill: the cell, with the atoms' extent plus ``r_cut`` across non-periodic axes. The
    smaller of the two.
    """
    return _estimated_neighbours(system, r_cut, *_box_geometry(box))


def _estimated_neighbours(system: System, r_cut: float, heights: list[float],
                          normals: list[list[float]], volume: float) -> tuple[float, float]:
    n_atoms = len(system)
    images, occupied = 1.0, volume  # occupied: the volume the atoms fill
    for axis, periodic in enumerate(system.pbc.tolist()):
        if periodic:
            images *= 2.0 * r_cut / heights[axis] + 1.0
        else:
            unit = np.array(normals[axis]) / math.sqrt(sum(x * x for x in normals[axis]))
            spread = system.positions @ unit
            occupied *= (float(spread.max() - spread.min()) + r_cut) / heights[axis]
    return min(n_atoms * images, n_atoms / occupied * 4.0 / 3.0 * math.pi * r_cut**3), images


@dataclass(frozen=True)
class GradientSlots:
    """Where each neighbour entry's derivative goes in the sparse gradient layout.

    ``pairs`` are the (row, atom) pairs of the result, sorted; ``entry_slot``
    and ``center_slot`` index into them; row c owns ``start[c]:start[c + 1]``.
    """

    pairs: np.ndarray  # (n_pairs, 2) int64
    entry_slot: np.ndarray  # (n_entries,) int64
    center_slot: np.ndarray  # (n_centers,) int64
    start: np.ndarray  # (n_centers + 1,) int64


def gradient_slots(neighbours: Neighbours, n_atoms: int) -> GradientSlots:
    """Number the (centre row, atom) pairs that interact: each neighbour and the centre."""
    n_centers = len(neighbours.centers)
    rows = np.arange(n_centers, dtype=np.int64)
    entry_keys = neighbours.center_of_entry * n_atoms + neighbours.atoms
    center_keys = rows * n_atoms + neighbours.centers
    keys, inverse = np.unique(np.concatenate([entry_keys, center_keys]), return_inverse=True)
    pairs = np.stack([keys // n_atoms, keys % n_atoms], axis=1)
    start = np.searchsorted(pairs[:, 0], np.arange(n_centers + 1))
    n_entries = len(entry_keys)
    return GradientSlots(pairs, inverse[:n_entries], inverse[n_entries:], start)
