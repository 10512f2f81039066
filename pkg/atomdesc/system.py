"""Input validation: any structure in, checked float64 arrays out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase.data import chemical_symbols


@dataclass(frozen=True)
class System:
    """A validated structure: the only form families and kernels ever see.

    ``positions`` (n, 3) float64 C-ordered, ``numbers`` (n,) atomic numbers,
    ``cell`` (3, 3) row vectors, ``pbc`` (3,) bools.
    """

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    #: For several structures computed as one: the first atom of each (plus the
    #: total). Atoms of different structures are never neighbours.
    fragments: np.ndarray | None = None
    #: For several periodic structures computed as one (:func:`merge_cells`): each
    #: one's own System, its cell included; ``positions`` and ``numbers`` are theirs,
    #: joined, and ``cell`` is unused.
    parts: tuple[System, ...] | None = None

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def is_periodic(self) -> bool:
        return bool(self.pbc.any())

    @classmethod
    def from_atoms(cls, atoms: Any) -> System:
        """Check an :class:`ase.Atoms` (or anything with its attributes).

        :raises ValueError: naming the problem: no atoms, NaN/inf positions or
            cell, unknown atomic numbers, a singular cell along periodic axes.
        """
        if isinstance(atoms, System):
            return atoms
        try:
            positions = np.asarray(atoms.positions)
            numbers = np.asarray(atoms.numbers)
            cell = np.asarray(atoms.cell[:] if hasattr(atoms.cell, "__getitem__") else atoms.cell)
            pbc = np.asarray(atoms.pbc)
        except AttributeError as exc:
            raise TypeError(
                f"expected an ase.Atoms (positions, numbers, cell, pbc), got {type(atoms).__name__}"
            ) from exc

        n = len(numbers)
        if n == 0:
            raise ValueError("the structure has no atoms")
        if positions.shape != (n, 3):
            raise ValueError(f"positions must have shape ({n}, 3), got {positions.shape}")
        if not np.issubdtype(positions.dtype, np.number):
            raise ValueError("positions must be numbers")
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        bad = ~np.isfinite(positions).all(axis=1)
        if bad.any():
            raise ValueError(
                f"positions contain NaN or inf (atoms {np.flatnonzero(bad)[:10].tolist()})"
            )
        if not np.issubdtype(numbers.dtype, np.integer) or numbers.min() < 1 or numbers.max() >= len(
            chemical_symbols
        ):
            raise ValueError("atomic numbers must be integers between 1 and 118")
        cell = np.array(cell, dtype=np.float64).reshape(3, 3)
        if not np.isfinite(cell).all():
            raise ValueError("the cell contains NaN or inf")
        pbc = np.array(pbc, dtype=bool).reshape(-1)
        if pbc.size == 1:
            pbc = np.repeat(pbc, 3)
        if pbc.shape != (3,):
            raise ValueError(f"pbc must be one or three booleans, got {pbc.tolist()}")
        _check_cell(cell, pbc)
        return cls(positions, numbers.astype(np.int64), cell, pbc)


def is_periodic(structure: Any) -> bool:
    """Whether a structure (an Atoms or alike) is periodic along any axis.

    ``any(pbc.tolist())``: numpy's ``.any()`` costs more than a microsecond on a
    3-element array, which adds up over a list of small molecules.
    """
    pbc = getattr(structure, "pbc", True)
    if isinstance(pbc, np.ndarray):
        return any(pbc.tolist())
    return bool(np.any(pbc))


def merge_molecules(structures: list[Any], known_non_periodic: bool = False) -> System:
    """Several non-periodic structures as one System with ``fragments`` set.

    Validation is vectorised over all structures; when anything is wrong,
    each structure is checked on its own so the error names the culprit.
    ``known_non_periodic`` skips the periodicity test of a caller that has
    just made it (a few microseconds a structure, over many small molecules).
    """
    try:
        positions, numbers = [], []
        for s in structures:  # one pass: attribute access is most of the cost
            positions.append(s.positions)
            numbers.append(s.numbers)
        joined = _joined_atoms(positions, numbers)
        valid = joined is not None and (
            known_non_periodic or not any(is_periodic(s) for s in structures))
    except (AttributeError, ValueError, TypeError):
        valid = False
    if not valid:
        _each_validated(structures)  # raises for the first invalid one
        raise ValueError("these structures cannot be computed together")  # pragma: no cover
    positions, numbers, fragments = joined
    return System(positions, numbers, np.zeros((3, 3)), np.zeros(3, dtype=bool), fragments)


def _joined_atoms(positions: list[Any], numbers: list[Any]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The structures' positions (float64) and atomic numbers (int64) joined, and the first
    atom of each (plus the total); None if any is not as :meth:`System.from_atoms` wants it."""
    counts = np.fromiter(map(len, numbers), np.int64, len(numbers))
    joined_positions = np.concatenate(positions).astype(np.float64, copy=False)
    joined_numbers = np.concatenate(numbers)
    valid = (
        joined_positions.ndim == 2 and joined_positions.shape[1] == 3
        and len(joined_positions) == len(joined_numbers)
        and (counts > 0).all() and np.isfinite(joined_positions).all()
        and np.issubdtype(joined_numbers.dtype, np.integer)
        and joined_numbers.min() >= 1 and joined_numbers.max() < len(chemical_symbols)
    )
    if not valid:
        return None
    fragments = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=fragments[1:])
    return joined_positions, joined_numbers.astype(np.int64, copy=False), fragments


def _each_validated(structures: list[Any]) -> list[System]:
    """Each structure checked on its own; the first invalid one's error names its index."""
    systems = []
    for index, structure in enumerate(structures):
        try:
            systems.append(System.from_atoms(structure))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"structure {index}: {exc}") from None
    return systems


def _check_cell(cell: np.ndarray, pbc: np.ndarray) -> None:
    """The lattice vectors along periodic axes must be independent and non-zero.

    Written without LAPACK: a BLAS call here would wake OpenBLAS's thread pool,
    which then competes with the kernels' OpenMP threads.
    """
    # plain floats: numpy's overhead on 3-vectors is most of the cost of this check
    axes = [axis for axis, periodic in enumerate(pbc.tolist()) if periodic]
    if not axes:
        return
    vectors = [cell[axis].tolist() for axis in axes]
    lengths = [math.sqrt(x * x + y * y + z * z) for x, y, z in vectors]
    zero = [axis for axis, length in zip(axes, lengths) if not length >= 1e-8]
    if zero:
        raise ValueError(f"the cell vector along periodic axis {zero} is zero")
    unit = [[x / length for x in v] for v, length in zip(vectors, lengths)]
    if len(unit) == 3:
        independence = abs(_dot(unit[0], _cross(unit[1], unit[2])))
    elif len(unit) == 2:
        independence = math.sqrt(sum(x * x for x in _cross(unit[0], unit[1])))
    else:
        independence = 1.0
    if independence < 1e-8:
        raise ValueError(
            "the cell is singular along its periodic axes (lattice vectors are linearly "
            "dependent)"
        )


def _cross(u: list[float], v: list[float]) -> list[float]:
    return [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]]


def _dot(u: list[float], v: list[float]) -> float:
    return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]


def face_normals(cell: np.ndarray) -> list[list[float]]:
    """Row k: ``cell[k + 1] x cell[k + 2]`` (indices mod 3), normal to the face the other two
    vectors span, so ``cell[k] . row k`` is the signed volume. Plain floats: np.cross (or
    numpy's indexing) costs several times more on a 3x3, and this runs on every call.
    """
    a, b, c = np.asarray(cell, dtype=np.float64).tolist()
    return [_cross(b, c), _cross(c, a), _cross(a, b)]


def box_for_neighbour_list(system: System) -> np.ndarray:
    """A full-rank box: vesin needs one even along non-periodic axes.

    A non-periodic axis whose vector is zero or dependent on the others gets a
    unit vector orthogonal to them; its length does not matter because
    nothing wraps along it.
    """
    if not system.is_periodic:
        return np.zeros((3, 3))
    cell = system.cell.copy()
    for axis in np.flatnonzero(~system.pbc):
        others = [cell[a] for a in range(3) if a != axis]
        normal = np.cross(*others)
        if _norm(normal) < 1e-8:  # the others are dependent: any vector orthogonal to one
            ref = others[0] if _norm(others[0]) > 1e-8 else others[1]
            normal = np.cross(ref, np.eye(3)[np.argmin(np.abs(ref))])
        volume = abs(np.dot(cell[0], np.cross(cell[1], cell[2])))
        lengths = [_norm(v) for v in cell]  # (their product underflows if two are zero)
        if min(lengths) < 1e-8 or volume < 1e-8 * lengths[0] * lengths[1] * lengths[2]:
            cell[axis] = normal / _norm(normal)
    return cell


def _norm(v: np.ndarray) -> float:
    return float(np.sqrt((v * v).sum()))


def merge_cells(structures: list[Any]) -> System:
    """Several periodic structures as one System with ``parts`` and ``fragments`` set.

    Atoms are validated together, as by :func:`merge_molecules`, and each cell on its own;
    when anything is wrong, each structure is checked alone so that the error names it.
    Only :func:`atomdesc.neighbours.compute_neighbours` looks inside: it lists each
    part's neighbours in its own cell.
    """
    try:
        positions, numbers, cells, pbcs = [], [], [], []
        for s in structures:  # one pass: attribute access is most of the cost
            positions.append(s.positions)
            numbers.append(s.numbers)
            cells.append(s.cell[:] if hasattr(s.cell, "__getitem__") else s.cell)
            pbcs.append(s.pbc)
        joined = _joined_atoms(positions, numbers)
        cell_array = np.array(cells, dtype=np.float64).reshape(len(structures), 3, 3)
        pbc_array = np.array(pbcs, dtype=bool).reshape(len(structures), 3)
        valid = joined is not None and bool(np.isfinite(cell_array).all())
        if valid:
            for cell, pbc in zip(cell_array, pbc_array):
                _check_cell(cell, pbc)
    except (AttributeError, ValueError, TypeError):
        valid = False
    if valid:
        positions, numbers, fragments = joined
        first = fragments.tolist()
        parts = [System(positions[a:b], numbers[a:b], cell, pbc)
                 for a, b, cell, pbc in zip(first[:-1], first[1:], cell_array, pbc_array)]
    else:
        # the first invalid one raises; else each is valid alone (e.g. pbc given as one
        # bool): take them as they come
        parts = _each_validated(structures)
        fragments = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(part) for part in parts], out=fragments[1:])
        positions = np.concatenate([part.positions for part in parts])
        numbers = np.concatenate([part.numbers for part in parts])
    return System(positions, numbers, np.zeros((3, 3)),
                  np.logical_or.reduce([part.pbc for part in parts]), fragments, tuple(parts))
