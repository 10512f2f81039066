"""Neighbour lists (from vesin) in the CSR form every kernel takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vesin

from .system import System, box_for_neighbour_list

#: Atoms closer than this (in Å) are rejected as overlapping.
DEFAULT_MIN_DISTANCE = 1e-2


@dataclass(frozen=True)
class Neighbours:
    """The neighbours of selected centres within a cutoff.

    Entries ``start[c]:start[c + 1]`` belong to ``centers[c]``; each entry has
    the neighbour's atom index, the vector ``r_j + shift - r_i`` and its
    length. A periodic image is an entry of its own (possibly of the centre
    itself in a small cell). The order within a centre is vesin's
    single-threaded order: fixed for a given input.
    """

    centers: np.ndarray  # (n_centers,) int64
    start: np.ndarray  # (n_centers + 1,) int64
    atoms: np.ndarray  # (n_entries,) int64
    vectors: np.ndarray  # (n_entries, 3) float64
    distances: np.ndarray  # (n_entries,) float64
    shifts: np.ndarray  # (n_entries, 3) int64

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
) -> Neighbours:
    """All neighbours within ``r_cut`` of each centre (full list, images included).

    :raises ValueError: if two atoms (or an atom and its own periodic image)
        are closer than ``min_distance``.
    """
    _check_periodic_images(system, r_cut, min_distance)
    if system.is_periodic:
        # One vesin thread: its pair order is then fixed for a given input, so
        # results never depend on threading (sorted=True groups pairs by centre).
        calculator = vesin.NeighborList(cutoff=float(r_cut), full_list=True, sorted=True,
                                        n_threads=1)
        i, j, shifts, d, vectors = calculator.compute(
            system.positions, box_for_neighbour_list(system), system.pbc, quantities="ijSdD"
        )
    else:
        i, j, shifts, d, vectors = _molecular_pairs(system, r_cut)
    if len(d) and d.min() < min_distance:
        k = int(np.argmin(d))
        a, b, where = int(i[k]), int(j[k]), ""
        if system.fragments is not None:  # name the molecule and its own atom indices
            molecule = int(np.searchsorted(system.fragments, a, side="right")) - 1
            a, b = a - system.fragments[molecule], b - system.fragments[molecule]
            where = f"structure {molecule}: "
        what = "its own periodic image" if a == b else f"atom {b}"
        raise ValueError(
            f"{where}atom {a} is {d[k]:.3g} Å from {what}, closer than min_distance="
            f"{min_distance} Å (overlapping atoms)"
        )
    atom_start = np.searchsorted(i, np.arange(len(system) + 1))
    if len(centers) == len(system) and (centers == np.arange(len(system))).all():
        return Neighbours(centers, atom_start, j.astype(np.int64), vectors, d, shifts)
    counts = atom_start[centers + 1] - atom_start[centers]
    start = np.zeros(len(centers) + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    # entry indices of the selected centres, in the order of `centers`
    take = np.repeat(atom_start[centers] - start[:-1], counts) + np.arange(start[-1])
    return Neighbours(
        centers=centers,
        start=start,
        atoms=j[take].astype(np.int64),
        vectors=np.ascontiguousarray(vectors[take]),
        distances=d[take],
        shifts=shifts[take],
    )


def _molecular_pairs(system: System, r_cut: float):
    """Pairs of a non-periodic system (or of several molecules at once), in (i, j) order.

    Molecules given together are laid out side by side, far apart, for one
    vesin call; vectors and distances are then recomputed from the original
    positions, so a molecule gets bit-identical neighbours alone or in a batch.
    """
    positions = system.positions
    if system.fragments is not None and len(system.fragments) > 2:
        fragment = np.repeat(np.arange(len(system.fragments) - 1), np.diff(system.fragments))
        lowest = np.minimum.reduceat(positions, system.fragments[:-1], axis=0)
        extent = (np.maximum.reduceat(positions, system.fragments[:-1], axis=0) - lowest).max()
        spacing = extent + 2.0 * r_cut + 1.0
        laid_out = positions - lowest[fragment]
        laid_out[:, 0] += spacing * fragment
    else:
        laid_out = positions
    # a hair beyond r_cut, then the exact test below on the original positions
    calculator = vesin.NeighborList(cutoff=float(r_cut) * (1 + 1e-9) + 1e-9, full_list=True,
                                    sorted=False, n_threads=1)
    i, j = calculator.compute(laid_out, np.zeros((3, 3)), False, quantities="ij")
    i = i.astype(np.int64, copy=False)
    j = j.astype(np.int64, copy=False)
    order = np.argsort(i * len(positions) + j)
    i, j = i[order], j[order]
    vectors = positions[j] - positions[i]
    d = np.sqrt((vectors * vectors).sum(axis=1))
    keep = d < r_cut
    if not keep.all():
        i, j, vectors, d = i[keep], j[keep], vectors[keep], d[keep]
    return i, j, np.zeros((len(i), 3), dtype=np.int64), d, vectors


#: Refuse neighbour lists that could exceed this many pairs (tens of GB).
MAX_PAIRS = 10**9


def _check_periodic_images(system: System, r_cut: float, min_distance: float) -> None:
    """Reject cells whose images overlap or would flood the neighbour list, before building it."""
    if not system.is_periodic:
        return
    box = box_for_neighbour_list(system)
    volume = abs(np.dot(box[0], np.cross(box[1], box[2])))
    images = 1.0
    for axis in np.flatnonzero(system.pbc):
        others = [box[a] for a in range(3) if a != axis]
        height = volume / np.sqrt((np.cross(*others) ** 2).sum())
        if height < min_distance:
            raise ValueError(
                f"the cell is {height:.3g} Å thin along periodic axis {axis}: every atom overlaps "
                f"its own periodic image (closer than min_distance={min_distance} Å)"
            )
        images *= 2.0 * r_cut / height + 1.0
    if images * len(system) ** 2 > MAX_PAIRS:
        raise ValueError(
            f"r_cut={r_cut} Å spans about {images:.3g} periodic images of this cell, more "
            "neighbour pairs than fit in memory; use a smaller cutoff or a larger cell"
        )


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
