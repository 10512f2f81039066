"""The Descriptor base class: what every family, built-in or third-party, is."""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from .result import DescriptorResult
from .system import System, is_periodic, merge_cells, merge_molecules


@dataclass
class ComputedPart:
    """Structures of a list computed together (see :meth:`Descriptor.compute_parts`).

    A periodic structure is a part of its own (``result`` is its result). A
    batch of molecules (or of small periodic structures) has ``result`` computed
    on the structures merged into one system: rows in the structures' order,
    atom indices of the merged system; ``molecules`` holds each one's centres
    (its own atom indices) and ``atom_start`` the first merged atom of each (and
    the total).
    """

    indices: list[int]
    result: DescriptorResult
    molecules: list[np.ndarray] | None = None
    atom_start: np.ndarray | None = None

    def results(self) -> list[DescriptorResult]:
        """One result per structure of the part (a batch is split into its molecules)."""
        if self.molecules is None:
            return [self.result]
        assert self.atom_start is not None
        return self.result.split(self.molecules, self.atom_start)


def max_threads() -> int:
    """Threads the kernels use by default (``OMP_NUM_THREADS`` or the cores)."""
    from . import kernels  # loading the kernels is left to the first use

    return kernels.max_threads()


def _call_threads(n_threads: int) -> int:
    """Threads for one kernel call (see :func:`atomdesc.kernels.call_threads`)."""
    from . import kernels

    return kernels.call_threads(n_threads)


def normalise_species(species: Iterable[str | int]) -> list[str]:
    """Chemical symbols sorted by atomic number; numbers and symbols are accepted.

    :raises ValueError: for an empty list, an unknown element or a repeat.
    """
    if isinstance(species, (str, int)):
        species = [species]
    numbers = []
    for s in species:
        if isinstance(s, (int, np.integer)) and 1 <= int(s) < len(chemical_symbols):
            numbers.append(int(s))
        elif isinstance(s, str) and s in atomic_numbers and s != "X":
            numbers.append(atomic_numbers[s])
        else:
            raise ValueError(f"unknown species {s!r} in species")
    if not numbers:
        raise ValueError("species must name at least one element")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"species has repeated elements: {list(species)}")
    return [chemical_symbols[z] for z in sorted(numbers)]


def positive_float(value: Any, name: str) -> float:
    """``value`` as a finite float > 0, or a ValueError naming ``name``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return x


class Descriptor(abc.ABC):
    """A descriptor family configured by its hyper-parameters.

    Subclasses (the families) set ``name`` and ``feature_label_names``, take
    their hyper-parameters as keyword arguments, and implement
    :attr:`hypers`, :attr:`feature_labels` and :meth:`compute_system`. The
    base class validates input, selects centres and runs lists of structures
    in parallel; :meth:`compute_system` only ever sees a checked
    :class:`~atomdesc.system.System` and a checked array of centres.
    """

    name: ClassVar[str]
    #: Names of the fields of each feature label, e.g. ("function", "species", "index").
    feature_label_names: ClassVar[tuple[str, ...]] = ()
    #: Whether compute_system can return position / strain gradients.
    supports_gradients: ClassVar[bool] = True
    supports_strain_gradients: ClassVar[bool] = True
    #: Whether ``centers`` may also be points in space, an (n, 3) array of Cartesian
    #: positions in Å (see :meth:`compute`).
    supports_point_centers: ClassVar[bool] = False
    #: Most molecules per batch when a list is computed (see :attr:`batchable`).
    batch_atoms: ClassVar[int] = 20_000
    #: Periodic structures of up to this many atoms in a list are computed in
    #: batches too, when :attr:`batches_periodic` (larger ones one per call).
    batch_cell_atoms: ClassVar[int] = 256

    species: list[str]

    # ---------------------------------------------------------------- metadata

    @property
    @abc.abstractmethod
    def hypers(self) -> dict[str, Any]:
        """JSON-able hyper-parameters, with ``"family"``; rebuilds an equal descriptor."""

    @property
    @abc.abstractmethod
    def feature_labels(self) -> tuple[tuple[Any, ...], ...]:
        """One tuple per feature column, fields named by ``feature_label_names``."""

    @property
    def n_features(self) -> int:
        return len(self.feature_labels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descriptor) and other.hypers == self.hypers

    def __hash__(self) -> int:
        return hash(json.dumps(self.hypers, sort_keys=True))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hypers.items() if k != "family")
        return f"atomdesc.descriptor({self.name!r}, {args})"

    # ------------------------------------------------------------- computation

    def compute(
        self,
        structures: Any,
        centers: Sequence[int] | None = None,
        gradients: bool = False,
        strain_gradients: bool = False,
        *,
        n_threads: int | None = None,
    ) -> DescriptorResult | list[DescriptorResult]:
        """Features (and optionally derivatives) of one structure or a list.

        :param structures: an :class:`ase.Atoms`, or a list of them (then a list
            of results comes back, computed in parallel over structures).
        :param centers: atom indices to describe (default: all atoms), or, for
            families with :attr:`supports_point_centers`, an (n, 3) array of points
            (Cartesian, Å): each row then describes the atoms around a point that
            no atom occupies; position gradients hold the points fixed, strain
            gradients deform them with the cell, and ``result.centers`` holds
            them. With a list of structures it applies to each.
        :param gradients: also compute derivatives with respect to positions.
        :param strain_gradients: also compute derivatives with respect to strain.
        :param n_threads: threads to use (default: ``OMP_NUM_THREADS`` or the cores).
        :raises ValueError: for invalid input, naming the problem.
        """
        hypers = self.hypers
        if not isinstance(structures, (list, tuple)):
            self._check_call(gradients, strain_gradients, n_threads)
            result = self._compute_one(structures, centers=centers, gradients=bool(gradients),
                                       strain_gradients=bool(strain_gradients),
                                       n_threads=n_threads or 0)
            result.hypers = hypers
            return result
        results: list[DescriptorResult | None] = [None] * len(structures)
        for part in self.compute_parts(structures, centers, gradients, strain_gradients,
                                       n_threads=n_threads):
            for k, result in zip(part.indices, part.results()):
                result.hypers = hypers
                results[k] = result
        return results  # type: ignore[return-value]

    def compute_parts(
        self, structures: Sequence[Any], centers: Sequence[int] | None = None,
        gradients: bool = False, strain_gradients: bool = False, *,
        n_threads: int | None = None,
    ) -> list[ComputedPart]:
        """A list of structures computed as :meth:`compute` does, before it is cut up.

        Molecules are computed in batches (one kernel call each), and so are
        small periodic structures where the family allows it
        (:attr:`batches_periodic`); larger periodic structures one per call on a
        pool of threads. Each batch comes back whole, as one
        :class:`ComputedPart` with the caller's indices of its structures, so
        that users of many small structures (the dataset pipeline) need not make
        and join one result per structure. Batches of molecules come first, then
        those of small cells, then the other periodic structures, each in input
        order. Arguments are those of :meth:`compute`.
        """
        self._check_call(gradients, strain_gradients, n_threads)
        options = dict(centers=centers, gradients=bool(gradients),
                       strain_gradients=bool(strain_gradients))
        parts: list[ComputedPart] = []
        single = list(range(len(structures)))
        if self.batchable and not _are_points(centers):
            single, molecules, cells = [], [], []
            for k, s in enumerate(structures):
                if not is_periodic(s):
                    molecules.append(k)
                elif self.batches_periodic and len(s) <= self.batch_cell_atoms:
                    cells.append(k)
                else:
                    single.append(k)
            for group, merge in ((molecules, _merge_known_molecules), (cells, merge_cells)):
                for batch in self._batches(structures, group):
                    try:
                        parts.append(self._compute_batch(
                            [structures[k] for k in batch], merge, n_threads=n_threads or 0,
                            **options))
                    except (ValueError, TypeError) as exc:
                        raise _renumbered(exc, batch) from None
                    parts[-1].indices = batch
        threads = n_threads or max_threads()
        workers = min(threads, max(len(single), 1))
        # fewer structures than threads: each kernel call gets a share of them
        per_call = max(threads // workers, 1)

        def one(k: int) -> DescriptorResult:
            try:
                return self._compute_one(structures[k], n_threads=per_call, **options)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"structure {k}: {exc}") from None

        if workers <= 1:
            done = list(map(one, single))
        else:
            # The kernels release the GIL, so threads over structures scale;
            # the threads are shared out, never oversubscribed.
            with ThreadPoolExecutor(max_workers=workers) as pool:
                done = list(pool.map(one, single))
        parts.extend(ComputedPart([k], result) for k, result in zip(single, done))
        return parts

    def _check_call(self, gradients: bool, strain_gradients: bool, n_threads: int | None) -> None:
        if gradients and not self.supports_gradients:
            raise ValueError(f"family {self.name!r} does not provide position gradients")
        if strain_gradients and not self.supports_strain_gradients:
            raise ValueError(f"family {self.name!r} does not provide strain gradients")
        if n_threads is not None and (int(n_threads) != n_threads or n_threads < 1):
            raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")

    @property
    def batchable(self) -> bool:
        """Whether molecules of a list may be computed as one system.

        True when every row depends only on its centre's neighbourhood (no
        per-structure averaging). Such a family gets lists of small molecules
        computed in one kernel call, with bit-identical results. Third-party
        families opt in by overriding this.
        """
        return False

    @property
    def batches_periodic(self) -> bool:
        """Whether small periodic structures of a list may be computed as one system too
        (when :attr:`batchable`).

        That system (see :func:`atomdesc.system.merge_cells`) has no cell of its own:
        only a family whose neighbours all come from
        :func:`atomdesc.neighbours.compute_neighbours` (or
        :class:`atomdesc.kernel_inputs.KernelNeighbours`), which lists each
        structure's in its own cell, may opt in.
        """
        return False

    def _batches(self, structures: Sequence[Any], indices: list[int]) -> list[list[int]]:
        batches: list[list[int]] = []
        size = self.batch_atoms
        for k in indices:
            n = len(structures[k])
            if not batches or size + n > self.batch_atoms:
                batches.append([])
                size = 0
            batches[-1].append(k)
            size += n
        return batches

    def _compute_batch(
        self, structures: list[Any], merge: Callable[[list[Any]], System], *,
        centers: Sequence[int] | None, gradients: bool, strain_gradients: bool, n_threads: int,
    ) -> ComputedPart:
        """Several structures, joined by ``merge``, in one call of :meth:`compute_system`."""
        system = merge(structures)
        self.check_species(system)
        atom_start = system.fragments
        if centers is None:  # every atom: nothing to check
            # each molecule's centres are a view of one read-only arange (an arange
            # per molecule costs more, over many small molecules)
            sizes = np.diff(atom_start).tolist()
            every = np.arange(max(sizes), dtype=np.int64)
            every.flags.writeable = False
            local = [every[:n] for n in sizes]
            rows = np.arange(atom_start[-1], dtype=np.int64)
        else:
            local = []
            for index, n_atoms in enumerate(np.diff(atom_start).tolist()):
                try:
                    local.append(check_centers(centers, n_atoms))
                except ValueError as exc:
                    raise ValueError(f"structure {index}: {exc}") from None
            rows = np.concatenate([c + a for c, a in zip(local, atom_start)])
        merged = self.compute_system(system, rows, gradients=gradients,
                                     strain_gradients=strain_gradients,
                                     n_threads=_call_threads(n_threads))
        return ComputedPart(list(range(len(structures))), merged, local, atom_start)

    def _compute_one(
        self, atoms: Any, *, centers: Sequence[int] | None, gradients: bool,
        strain_gradients: bool, n_threads: int,
    ) -> DescriptorResult:
        system = System.from_atoms(atoms)
        self.check_species(system)
        rows = check_centers(centers, len(system), points=self.supports_point_centers,
                             family=self.name)
        return self.compute_system(
            system, rows, gradients=gradients, strain_gradients=strain_gradients,
            n_threads=_call_threads(n_threads),
        )

    @abc.abstractmethod
    def compute_system(
        self,
        system: System,
        centers: np.ndarray,
        *,
        gradients: bool,
        strain_gradients: bool,
        n_threads: int,
    ) -> DescriptorResult:
        """Compute a validated system (the part a family implements).

        :param centers: int64 atom indices, already checked to be in range.
        :param n_threads: OpenMP threads for the kernel; 0 means the default.
        """

    def check_species(self, system: System) -> None:
        """Raise ``ValueError`` if the structure holds elements not in ``species``."""
        allowed = {atomic_numbers[s] for s in self.species}
        unknown = sorted(set(np.unique(system.numbers).tolist()) - allowed)
        if unknown:
            raise ValueError(
                f"the structure contains species {[chemical_symbols[z] for z in unknown]} "
                f"that are not in species={self.species}"
            )


def check_centers(centers: Any, n_atoms: int, points: bool = False,
                  family: str = "this family") -> np.ndarray:
    """Centre indices as int64, all atoms by default; or, with ``points``, an (n, 3)
    array of points as float64.

    :raises ValueError: for non-integers, a non-1-D list or an index out of range;
        for points that are not finite, or points where the family takes none.
    """
    if centers is None:
        return np.arange(n_atoms, dtype=np.int64)
    array = np.asarray(centers)
    if _are_points(array):
        if not points:
            raise ValueError(f"{family} takes atom indices as centers, not points")
        if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
            raise ValueError("center points must be finite numbers")
        return np.ascontiguousarray(array, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"centers must be a 1-D list of atom indices, got shape {array.shape}")
    if array.size == 0:
        raise ValueError("centers is empty")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"centers must be integer atom indices, got {array.dtype}")
    bad = array[(array < 0) | (array >= n_atoms)]
    if bad.size:
        raise ValueError(
            f"centers out of range for a structure of {n_atoms} atoms: {bad[:10].tolist()}"
        )
    return array.astype(np.int64)


def _are_points(centers: Any) -> bool:
    """Whether ``centers`` is an (n, 3) array of points (not atom indices)."""
    try:
        shape = np.shape(centers) if centers is not None else ()
    except ValueError:  # ragged: neither
        return False
    return len(shape) == 2 and shape[1] == 3 and shape[0] > 0


def _merge_known_molecules(structures: list[Any]) -> System:
    # compute_parts has just sorted them out: no periodicity test again
    return merge_molecules(structures, known_non_periodic=True)


def _renumbered(exc: Exception, batch: list[int]) -> Exception:
    """``exc`` with its leading "structure i" (i in ``batch``) made the index in the caller's list."""
    match = re.match(r"structure (\d+): ", str(exc))
    if match is None or int(match.group(1)) >= len(batch):
        return exc
    return type(exc)(f"structure {batch[int(match.group(1))]}: {str(exc)[match.end():]}")
