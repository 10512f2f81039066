"""Neighbour data in the exact form the Fortran kernels take, checked before every call.

The kernels trust their index arrays; this module is where they are made and
where their bounds are verified, so no Python input can make Fortran read or
write outside an array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase.data import atomic_numbers

from .neighbours import (Neighbours, check_kernel_index, compute_neighbours, gradient_slots,
                         point_neighbours)
from .output_memory import DirtyPages, recycled_empty, untouched_zero_rows, untouched_zeros
from .system import System

@dataclass(frozen=True)
class KernelNeighbours:
    """CSR neighbours with 1-based species and gradient slots, as int32 for Fortran."""

    neighbours: Neighbours
    start: np.ndarray  # (n_centers + 1,) int32, 0-based offsets
    vectors: np.ndarray  # (n_entries, 3) float64 (pass .T)
    distances: np.ndarray  # (n_entries,) float64
    species: np.ndarray  # (n_entries,) int32, 1-based index into the family's species
    center_species: np.ndarray  # (n_centers,) int32, 1-based index into the family's species
    entry_slot: np.ndarray  # (n_entries,) int32, 1-based gradient slot
    center_slot: np.ndarray  # (n_centers,) int32, 1-based gradient slot
    slot_start: np.ndarray  # (n_centers + 1,) int32, 0-based offsets of each row's slots
    pairs: np.ndarray | None  # (n_slots, 2) int64 gradient pairs, when gradients are wanted
    n_atoms: int = 0  # atoms of the system (point centres come after them in ``pairs``)
    points: bool = False  # centres are points, of species index n_species + 1

    @property
    def n_slots(self) -> int:
        return 0 if self.pairs is None else len(self.pairs)

    def outputs(self, n_features: int, strain_gradients: bool, zeroed: bool,
                sparse: bool = False, n_threads: int = 1) -> tuple[np.ndarray, ...]:
        """Feature, gradient and strain arrays of a per-centre kernel for these neighbours:
        ``(n_features, n_centers)``, ``(n_features, 3, n_slots)`` and
        ``(n_features, 3, 3, n_centers or 0)`` (see :func:`kernel_outputs`)."""
        n_centers = len(self.center_slot)
        return kernel_outputs(
            [(n_features, n_centers), (n_features, 3, self.n_slots),
             (n_features, 3, 3, n_centers if strain_gradients else 0)], zeroed=zeroed,
            sparse=sparse, n_threads=n_threads)

    def sparse_outputs(self, n_features: int, strain_gradients: bool,
                       n_threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, DirtyPages]:
        """:meth:`outputs` with ``sparse``, for a kernel that clears the recycled pages
        of each centre's strain rows itself, just before it writes them: the strain
        array's pages still to clear come last (see :func:`untouched_zero_rows`)."""
        n_centers = len(self.center_slot) if strain_gradients else 0
        feat, grad, _ = self.outputs(n_features, False, zeroed=True, sparse=True,
                                     n_threads=n_threads)
        strain, dirty = untouched_zero_rows((n_centers, 3, 3, n_features), n_threads)
        return feat, grad, strain.T, dirty

    @classmethod
    def build(
        cls,
        system: System,
        r_cut: float,
        centers: np.ndarray,
        species: Sequence[str],
        gradients: bool,
        n_threads: int = 1,
    ) -> KernelNeighbours:
        lookup = np.zeros(max(atomic_numbers[s] for s in species) + 1, dtype=np.int32)
        for index, symbol in enumerate(species, start=1):
            lookup[atomic_numbers[symbol]] = index
        atom_species = lookup[np.minimum(system.numbers, len(lookup) - 1)]
        if centers.ndim == 2:
            # points: extra atoms len(system) + k, of a species of their own that a
            # kernel gives no density (see ``points``), whose own gradient slots the
            # caller drops (result_gradients)
            nb = point_neighbours(system, r_cut, centers, n_threads=n_threads,
                                  atom_labels=atom_species)
            n_indexed = len(system) + len(centers)  # what gradient pairs may point at
            center_species = np.full(len(centers), len(species) + 1, dtype=np.int32)
        else:
            nb = compute_neighbours(system, r_cut, centers, n_threads=n_threads,
                                    atom_labels=atom_species)
            n_indexed = len(system)
            center_species = atom_species[centers]
        n_entries = len(nb.distances)
        check_kernel_index(n_entries, len(centers))
        neighbour_species = nb.labels
        n_centers = len(centers)
        if gradients:
            slots = gradient_slots(nb, n_indexed)
            pairs = slots.pairs
            entry_slot = (slots.entry_slot + 1).astype(np.int32)
            center_slot = (slots.center_slot + 1).astype(np.int32)
            slot_start = slots.start.astype(np.int32)
        else:
            pairs = None
            entry_slot = np.zeros(n_entries, dtype=np.int32)
            center_slot = np.zeros(n_centers, dtype=np.int32)
            slot_start = np.zeros(n_centers + 1, dtype=np.int32)
        vectors, distances = nb.vectors, nb.distances
        if n_entries == 0:
            # f2py refuses zero-length arrays whose size a hidden dimension
            # gives; one dummy entry past start[-1] is never read.
            vectors, distances = np.array([[1.0, 0.0, 0.0]]), np.ones(1)
            neighbour_species = np.ones(1, dtype=np.int32)
            entry_slot = np.ones(1, dtype=np.int32)
        result = cls(
            neighbours=nb,
            start=nb.start.astype(np.int32),
            vectors=vectors,
            distances=distances,
            species=neighbour_species,
            center_species=center_species,
            entry_slot=entry_slot,
            center_slot=center_slot,
            slot_start=slot_start,
            pairs=pairs,
            n_atoms=len(system),
            points=centers.ndim == 2,
        )
        result.check(len(species) + (centers.ndim == 2))
        return result

    def result_gradients(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient pairs and values of a result from the kernel's (``values``: its
        output ``.T``): without the point centres' own slots, where centres are points
        (a kernel writes every centre's slot; a point does not move)."""
        assert self.pairs is not None
        if not self.points:
            return self.pairs, values
        keep = self.pairs[:, 1] < self.n_atoms
        return self.pairs[keep], values[keep]

    def check(self, n_species: int) -> None:
        """Verify every index the kernels will follow (cheap, O(n_entries))."""
        n_entries = len(self.distances)
        n_centers = len(self.center_slot)
        ok = (
            self.start.shape == (n_centers + 1,)
            and self.start[0] == 0
            and self.start[-1] == len(self.neighbours.distances)
            and n_entries == max(self.start[-1], 1)
            and (np.diff(self.start) >= 0).all()
            and self.vectors.shape == (n_entries, 3)
            and self.vectors.flags.c_contiguous
            and self.species.shape == (n_entries,)
            and self.species.min() >= 1
            and self.species.max() <= n_species
            and self.center_species.shape == (n_centers,)
            and self.center_species.min() >= 1
            and self.center_species.max() <= n_species
            and np.isfinite(self.vectors).all()
            and self.distances.min() > 0
        )
        if ok and self.pairs is not None:
            n_slots = self.n_slots
            ok = (
                self.entry_slot.shape == (n_entries,)
                and self.slot_start.shape == (n_centers + 1,)
                and self.slot_start[0] == 0
                and self.slot_start[-1] == n_slots
                and (np.diff(self.slot_start) >= 0).all()
                and self.entry_slot.min() >= 1
                and self.entry_slot.max() <= n_slots
                and self.center_slot.min() >= 1
                and self.center_slot.max() <= n_slots
            )
            if ok:
                # every slot a centre writes is one of its own: centres run in
                # parallel, and each zeroes its slots before adding to them
                counts = np.diff(self.start)
                used = self.entry_slot[: self.start[-1]]
                ok = bool(
                    (np.repeat(self.slot_start[:-1], counts) < used).all()
                    and (used <= np.repeat(self.slot_start[1:], counts)).all()
                    and (self.slot_start[:-1] < self.center_slot).all()
                    and (self.center_slot <= self.slot_start[1:]).all()
                )
        if not ok:  # a bug in atomdesc, never a user error: refuse to call Fortran
            raise RuntimeError("internal error: inconsistent neighbour data for the kernels")


def kernel_outputs(shapes: Sequence[tuple[int, ...]], zeroed: bool, sparse: bool = False,
                   n_threads: int = 1) -> tuple[np.ndarray, ...]:
    """Output arrays for a kernel, each shaped as the kernel declares it (fastest index first).

    Each is the ``.T`` view of a C-ordered array, so Fortran-contiguous for the
    kernel and C-ordered again for the caller after ``.T``.

    :param zeroed: ``True`` for kernels that only add to their outputs (ACSF):
        ``np.zeros`` takes fresh zero pages from the system for large arrays,
        so memory no centre writes is never cleared by the caller (it becomes
        resident by the 2 MiB huge page where numpy gets those). ``False`` for
        kernels that write every element (SOAP): undefined values, in memory
        recycled from dropped results (see :func:`recycled_empty`).
    :param sparse: zeroed outputs of which the kernel will write a small part
        (many species, few around each centre): see :func:`untouched_zeros`.
    :param n_threads: threads that clear recycled memory for sparse outputs (0: the
        kernels' default).
    """
    if sparse:
        return tuple(untouched_zeros(tuple(reversed(shape)), n_threads).T for shape in shapes)
    allocate = np.zeros if zeroed else recycled_empty
    return tuple(allocate(tuple(reversed(shape))).T for shape in shapes)
