"""The on-disk feature store: a zarr group holding a featurized dataset.

Layout (``S`` structures, ``R`` feature rows, ``P`` gradient pairs, ``F`` features)::

    OUT.zarr/
      features          (R, F)       float64  all structures' rows, one after another
      centers           (R,)         int64    atom index of each row (-1: per-structure row)
      offsets           (S + 1,)     int64    rows of structure i: offsets[i]:offsets[i+1]
      structures        (S, 3)       int64    per structure: n_atoms, input file (index
                                              into attrs["inputs"]), frame index in that file
      gradient_pairs    (P, 2)       int64    (row of features, atom index of the structure)
      gradient_values   (P, 3, F)    float64  d features[row] / d positions[atom]
      gradient_offsets  (S + 1,)     int64    pairs of structure i
      strain_gradients  (R, 3, 3, F) float64

The gradient arrays are present only when gradients were computed, and
``strain_gradients`` only with strain gradients. ``gradient_pairs[:, 0]`` is a
row of the flat ``features`` array; ``store[i]`` turns it back into the row
of structure ``i`` (the :class:`~atomdesc.result.DescriptorResult` layout).

The group attributes hold the hyper-parameters, the feature labels, the
atomdesc version, the input files and the progress record. Data are appended
chunk by chunk in input order; every zarr chunk file is replaced atomically,
and the progress record (how many structures, rows and pairs are valid, and
where reading resumes) is written only after a chunk's data, so a store cut
short at any moment reads back as the chunks before it. While a run is under
way the arrays are allocated far beyond their valid length (unwritten chunks
cost nothing in zarr); finishing trims them to it.

The store is read with zarr, and written with :mod:`atomdesc.rowarrays`:
the same files, without zarr's event loop and read-back of partly filled
chunks. Stores written through zarr itself (atomdesc 0.1.0, Blosc with byte
shuffling) read the same way.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .result import DescriptorResult
from .rowarrays import META, RowArray, codec_metadata, group_metadata, read_json, write_json

#: ``attrs["format"]`` of a store written by atomdesc.
FORMAT = "atomdesc-features"
FORMAT_VERSION = 1

#: Columns of the ``structures`` array.
STRUCTURE_COLUMNS = ("n_atoms", "frame_file", "frame_index")
#: Rows allocated while a run is under way (trimmed when it finishes).
CAPACITY = 1 << 40

#: Bounds on the bytes of one storage chunk (before compression).
MIN_CHUNK_BYTES = 1 << 15
MAX_CHUNK_BYTES = 1 << 22


def storage_rows(rows_per_append: int, row_bytes: int) -> int:
    """Rows of one storage chunk: about one append, within the byte bounds.

    A storage chunk about as large as what one pipeline chunk appends keeps
    the read-modify-write of the partly filled chunk at each append cheap,
    and the number of files moderate.
    """
    rows = 1 << max(int(rows_per_append) - 1, 0).bit_length()  # next power of two
    low = max(MIN_CHUNK_BYTES // max(row_bytes, 1), 1)
    high = max(MAX_CHUNK_BYTES // max(row_bytes, 1), 1)
    return int(min(max(rows, low), high))


@dataclass
class ChunkResult:
    """Features of consecutive structures (what one task returns).

    ``features``, ``gradient_values`` and ``strain_gradients`` are lists of
    blocks of rows, one after another (as computed: the store writes them
    without concatenating them first); ``centers`` and ``gradient_pairs`` are
    arrays. Rows and pairs are local to the chunk; ``gradient_pairs[:, 0]`` is
    a row of this chunk's features. ``errors`` lists ``(position in chunk,
    message)`` of the structures that failed; they have no rows.
    """

    features: list[np.ndarray]
    centers: np.ndarray
    n_rows: np.ndarray  # rows per structure that succeeded
    n_atoms: np.ndarray
    gradient_pairs: np.ndarray | None = None
    gradient_values: list[np.ndarray] | None = None
    n_pairs: np.ndarray | None = None
    strain_gradients: list[np.ndarray] | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def n_structures(self) -> int:
        return len(self.n_atoms)

    @property
    def rows(self) -> int:
        return int(self.n_rows.sum())

    @property
    def nbytes(self) -> int:
        """Bytes of the result arrays."""
        blocks = [self.centers, self.gradient_pairs, *self.features,
                  *(self.gradient_values or []), *(self.strain_gradients or [])]
        return sum(a.nbytes for a in blocks if a is not None)


@dataclass
class Progress:
    """What part of a store is valid, and where reading resumes."""

    chunks: int = 0
    structures: int = 0
    rows: int = 0
    pairs: int = 0
    atoms: int = 0
    next_file: int = 0
    next_index: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        return cls(**data)


def is_store(path: str | Path) -> bool:
    """Whether ``path`` is a store written by atomdesc."""
    try:
        attrs = read_attributes(path)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return attrs.get("format") == FORMAT


def read_attributes(path: str | Path) -> dict[str, Any]:
    """The attributes of a store's group (its hyper-parameters, options, progress)."""
    return dict(read_json(Path(path) / META)["attributes"])


def remove_store(path: str | Path) -> None:
    """Delete an atomdesc store; refuse to delete anything else."""
    path = Path(path)
    if not path.exists():
        return
    if not is_store(path):
        raise ValueError(f"{path} exists and is not an atomdesc feature store; not removing it")
    shutil.rmtree(path)


#: zarr (and :mod:`atomdesc.rowarrays`, for a file that may hold valid data)
#: writes a file as ``NAME.<32 hex digits>.partial`` and then renames it.
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")


def remove_partial_files(path: str | Path) -> list[Path]:
    """Delete the temporary files of writes that a killed run never finished.

    zarr writes each file under a temporary name and renames it when complete,
    so a run killed mid-write (``kill -9``) leaves such a file behind; it is
    never read, only wasted space. Returns the files removed.
    """
    removed = []
    for p in Path(path).rglob("*.partial"):
        if _PARTIAL.search(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


class StoreWriter:
    """Appends chunk results to a store in order and records progress.

    Written synchronously on the calling thread with :mod:`atomdesc.rowarrays`
    (the files zarr would write, without its event loop). The arrays are
    declared :data:`CAPACITY` rows long; the valid lengths are in the progress
    record, and :meth:`finish` trims the arrays to them and marks the store
    complete.
    """

    def __init__(self, path: str | Path, group_meta: dict[str, Any], progress: Progress,
                 arrays: dict[str, RowArray]) -> None:
        self.path = Path(path)
        self.group_meta = group_meta
        self.progress = progress
        self.arrays = arrays
        self.gradients = "gradient_values" in self.arrays
        self.strain_gradients = "strain_gradients" in self.arrays

    # ----------------------------------------------------------- create / open

    @classmethod
    def create(
        cls, path: str | Path, *, n_features: int, attrs: dict[str, Any], gradients: bool,
        strain_gradients: bool, compressor: str | None = "blosc",
        expected: ChunkResult | None = None, per_append: dict[str, int] | None = None,
    ) -> StoreWriter:
        """A new, empty store.

        :param expected: a typical chunk: storage chunks are sized to about one
            such chunk.
        :param per_append: or the expected ``structures``, ``rows`` and
            ``pairs`` of one chunk.
        """
        f = n_features
        per_append = dict(per_append or {"structures": 64, "rows": 1024, "pairs": 8192})
        if expected is not None:
            per_append = {"structures": expected.n_structures,
                          "rows": expected.rows,
                          "pairs": len(expected.gradient_pairs)
                          if expected.gradient_pairs is not None else 0}
        specs = [("features", "rows", (f,), "float64"), ("centers", "rows", (), "int64"),
                 ("offsets", "structures", (), "int64"),
                 ("structures", "structures", (len(STRUCTURE_COLUMNS),), "int64")]
        if gradients:
            specs += [("gradient_pairs", "pairs", (2,), "int64"),
                      ("gradient_values", "pairs", (3, f), "float64"),
                      ("gradient_offsets", "structures", (), "int64")]
        if strain_gradients:
            specs.append(("strain_gradients", "rows", (3, 3, f), "float64"))
        codec = _compressor(compressor)
        path = Path(path)
        progress = Progress()
        # The group's metadata first: a directory without it is not a store,
        # and a store whose progress records nothing is simply made again.
        path.mkdir(parents=True, exist_ok=True)
        group_meta = group_metadata({
            **attrs, "format": FORMAT, "format_version": FORMAT_VERSION,
            "structure_columns": list(STRUCTURE_COLUMNS), "progress": progress.to_json()})
        write_json(path / META, group_meta, compact=True)
        arrays = {}
        for name, kind, tail, dtype in specs:
            row_bytes = int(np.prod(tail, dtype=np.int64)) * np.dtype(dtype).itemsize
            rows = storage_rows(per_append[kind], row_bytes)
            arrays[name] = RowArray.create(path / name, (CAPACITY, *tail), (rows, *tail), dtype,
                                           codec_metadata(codec, dtype))
        return cls(path, group_meta, progress, arrays)

    @classmethod
    def open(cls, path: str | Path) -> StoreWriter:
        """Reopen an unfinished store to append to it after its last complete chunk.

        Temporary files a killed run left behind are removed first.
        """
        path = Path(path)
        remove_partial_files(path)
        group_meta = read_json(path / META)
        progress = Progress.from_json(dict(group_meta["attributes"]["progress"]))
        lengths = _valid_lengths(progress)
        names = sorted(p.parent.name for p in path.glob(f"*/{META}"))
        arrays = {name: RowArray(path / name, lengths[name]) for name in names}
        return cls(path, group_meta, progress, arrays)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group_meta["attributes"])

    # ------------------------------------------------------------------ append

    def append(self, chunks: ChunkResult | list[ChunkResult], frames: list[tuple[int, int]],
               next_position: tuple[int, int], skipped: list[dict[str, Any]]) -> None:
        """Write consecutive chunks after the valid data, then record them in the progress.

        The chunks are written as they are, one after another (not
        concatenated first).

        :param frames: ``(file number, frame index)`` of each structure of ``chunks``.
        :param next_position: where reading resumes after these chunks.
        :param skipped: invalid frames of these chunks (recorded in the metadata).
        """
        if isinstance(chunks, ChunkResult):
            chunks = [chunks]
        p = self.progress
        s0, r0, q0 = p.structures, p.rows, p.pairs
        n_atoms = np.concatenate([c.n_atoms for c in chunks]).astype(np.int64)
        rows = np.cumsum(np.concatenate([c.n_rows for c in chunks]), dtype=np.int64)
        file_index = np.asarray(frames, dtype=np.int64).reshape(-1, 2)
        a = self.arrays
        a["features"].append([block for c in chunks for block in c.features], wait=False)
        a["centers"].append([c.centers for c in chunks], wait=False)
        a["offsets"].append([r0 + rows if s0 else np.r_[0, rows]], wait=False)
        a["structures"].append([np.column_stack([n_atoms, file_index])], wait=False)
        n_pairs = 0
        if self.gradients:
            pairs, start = [], r0
            for c in chunks:
                assert c.gradient_pairs is not None and c.n_pairs is not None
                local = c.gradient_pairs.copy()
                local[:, 0] += start
                pairs.append(local)
                start += c.rows
            a["gradient_pairs"].append(pairs, wait=False)
            a["gradient_values"].append([b for c in chunks for b in c.gradient_values or []],
                                        wait=False)
            ends = np.cumsum(np.concatenate([c.n_pairs for c in chunks]), dtype=np.int64)
            n_pairs = int(ends[-1]) if len(ends) else 0
            a["gradient_offsets"].append([q0 + ends if s0 else np.r_[0, ends]], wait=False)
        if self.strain_gradients:
            a["strain_gradients"].append([b for c in chunks for b in c.strain_gradients or []],
                                         wait=False)
        _wait_all(a.values())  # their chunk files are written on other threads
        # Only now, with every array written, do the chunks count.
        p.chunks += 1
        p.structures = s0 + len(n_atoms)
        p.rows = r0 + int(rows[-1]) if len(rows) else r0
        p.pairs = q0 + n_pairs
        p.atoms += int(n_atoms.sum())
        p.next_file, p.next_index = next_position
        p.skipped.extend(skipped)
        self._save_progress()

    def skip(self, next_position: tuple[int, int], skipped: list[dict[str, Any]]) -> None:
        """Record a chunk in which every frame was invalid."""
        self.progress.chunks += 1
        self.progress.next_file, self.progress.next_index = next_position
        self.progress.skipped.extend(skipped)
        self._save_progress()

    def finish(self) -> None:
        """Trim every array to its valid length and mark the store complete.

        Chunks past the end were never written (or hold an interrupted
        chunk's data, which a resumed run overwrote); they stay as they are.
        """
        lengths = _valid_lengths(self.progress)
        lengths["offsets"] = lengths["gradient_offsets"] = self.progress.structures + 1
        for name, array in self.arrays.items():
            if array.shape[0] != lengths[name]:
                array.resize(lengths[name])
        self.progress.complete = True
        self._save_progress()

    def _save_progress(self) -> None:
        self.group_meta["attributes"]["progress"] = self.progress.to_json()
        write_json(self.path / META, self.group_meta, compact=True)


def _wait_all(arrays: Iterable[RowArray]) -> None:
    """Wait for the files of every array, then raise the first error."""
    errors = []
    for array in arrays:
        try:
            array.wait()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _valid_lengths(p: Progress) -> dict[str, int]:
    """Rows of each array that hold data (the offsets gain their leading 0 with the first rows)."""
    offsets = p.structures + 1 if p.structures else 0
    return {"features": p.rows, "centers": p.rows, "strain_gradients": p.rows,
            "offsets": offsets, "gradient_offsets": offsets, "structures": p.structures,
            "gradient_pairs": p.pairs, "gradient_values": p.pairs}


def _compressor(name: str | None) -> str | None:
    """The codec of a ``compressor`` option (see :func:`rowarrays.codec_metadata`)."""
    if name in (None, "none"):
        return None
    if name == "zstd":
        return "zstd"
    if name == "blosc":
        # Blosc/LZ4 without shuffling: the gradients are mostly zeros, which
        # LZ4 finds as they are; shuffling made them larger and 3x slower to encode
        return "lz4"
    raise ValueError(f"compressor must be 'blosc', 'zstd' or None, got {name!r}")


# ---------------------------------------------------------------------- reader


def open_features(path: str | Path, *, allow_incomplete: bool = False) -> FeatureStore:
    """Open a store written by :func:`atomdesc.featurize_dataset` for reading.

    Nothing is loaded until asked for: ``store.features`` is a lazy zarr
    array (slice it to read), ``store[i]`` reads one structure.

    :param allow_incomplete: open a store whose run was interrupted; only the
        structures of its finished chunks are visible.
    :raises FileNotFoundError: if there is no store at ``path``.
    :raises ValueError: if ``path`` is not an atomdesc store, or is incomplete.

    >>> store = atomdesc.open_features("out.zarr")  # doctest: +SKIP
    >>> store.features[:10]                          # doctest: +SKIP
    >>> store[0].features                            # doctest: +SKIP
    """
    return FeatureStore(path, allow_incomplete=allow_incomplete)


class FeatureStore:
    """A featurized dataset on disk, read lazily (see :mod:`atomdesc.store`)."""

    def __init__(self, path: str | Path, *, allow_incomplete: bool = False) -> None:
        import zarr

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no feature store at {str(path)!r}")
        if not is_store(self.path):
            raise ValueError(f"{path} is not an atomdesc feature store")
        self._group = zarr.open_group(str(self.path), mode="r", zarr_format=3)
        self.attrs: dict[str, Any] = dict(self._group.attrs)
        self.progress = Progress.from_json(dict(self.attrs["progress"]))
        if not self.progress.complete and not allow_incomplete:
            raise ValueError(
                f"{path} is incomplete ({self.progress.structures} structures in "
                f"{self.progress.chunks} chunks written): re-run the same command to finish it, "
                "or open it with allow_incomplete=True"
            )
        self._offsets: np.ndarray | None = None
        self._table: np.ndarray | None = None
        self._gradient_offsets: np.ndarray | None = None

    def __repr__(self) -> str:
        state = "" if self.progress.complete else ", incomplete"
        return (f"<FeatureStore {str(self.path)!r}: {len(self)} structures, "
                f"{self.progress.rows} rows x {self.n_features} features "
                f"({self.hypers.get('family')}){state}>")

    # ---------------------------------------------------------------- metadata

    @property
    def hypers(self) -> dict[str, Any]:
        """Hyper-parameters of the descriptor that made the store."""
        return dict(self.attrs["hypers"])

    def descriptor(self) -> Any:
        """The descriptor that made the store, rebuilt from its hyper-parameters."""
        from . import descriptor_from_hypers

        return descriptor_from_hypers(self.hypers)

    @property
    def feature_labels(self) -> list[tuple[Any, ...]]:
        return [tuple(label) for label in self.attrs["feature_labels"]]

    @property
    def n_features(self) -> int:
        return int(self.attrs["n_features"])

    @property
    def inputs(self) -> list[str]:
        """The input files, indexed by :attr:`frame_file`."""
        return list(self.attrs["inputs"])

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Invalid frames left out (``file``, ``index``, ``error``)."""
        return list(self.progress.skipped)

    @property
    def options(self) -> dict[str, Any]:
        """How the features were computed (gradients, average, centre species)."""
        return dict(self.attrs["options"])

    @property
    def has_gradients(self) -> bool:
        return "gradient_values" in self._group

    @property
    def has_strain_gradients(self) -> bool:
        return "strain_gradients" in self._group

    # -------------------------------------------------------------------- data

    @property
    def features(self) -> Any:
        """The flat ``(total_rows, n_features)`` array (a lazy zarr array)."""
        return self._array("features")

    @property
    def centers(self) -> Any:
        return self._array("centers")

    @property
    def offsets(self) -> np.ndarray:
        """``(n_structures + 1,)``: the rows of structure i are ``offsets[i]:offsets[i+1]``."""
        if self._offsets is None:
            self._offsets = self._group["offsets"][: len(self) + 1]
        return self._offsets

    @property
    def n_atoms(self) -> np.ndarray:
        """Atoms of each structure."""
        return self._structures()[:, 0]

    @property
    def frame_file(self) -> np.ndarray:
        """Input file of each structure, an index into :attr:`inputs`."""
        return self._structures()[:, 1]

    @property
    def frame_index(self) -> np.ndarray:
        """Frame index of each structure in its input file."""
        return self._structures()[:, 2]

    def _structures(self) -> np.ndarray:
        if self._table is None:
            self._table = self._group["structures"][: len(self)]
        return self._table

    @property
    def gradient_pairs(self) -> Any:
        return self._array("gradient_pairs")

    @property
    def gradient_values(self) -> Any:
        return self._array("gradient_values")

    @property
    def strain_gradients(self) -> Any:
        return self._array("strain_gradients")

    def provenance(self, i: int) -> tuple[str, int]:
        """``(input file, frame index)`` of structure ``i``."""
        i = self._check_index(i)
        return self.inputs[int(self.frame_file[i])], int(self.frame_index[i])

    def __len__(self) -> int:
        return self.progress.structures

    def __iter__(self) -> Iterator[DescriptorResult]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> DescriptorResult:
        """Structure ``i`` as a :class:`~atomdesc.result.DescriptorResult`."""
        i = self._check_index(i)
        a, b = (int(x) for x in self.offsets[i: i + 2])
        g = self._group
        result = DescriptorResult(
            features=g["features"][a:b],
            centers=g["centers"][a:b],
            n_atoms=int(self.n_atoms[i]),
            feature_labels=tuple(self.feature_labels),
            hypers=self.hypers,
        )
        if self.has_gradients:
            if self._gradient_offsets is None:
                self._gradient_offsets = g["gradient_offsets"][: len(self) + 1]
            p, q = (int(x) for x in self._gradient_offsets[i: i + 2])
            pairs = g["gradient_pairs"][p:q]
            pairs[:, 0] -= a
            result.gradient_pairs = pairs
            result.gradient_values = g["gradient_values"][p:q]
        if self.has_strain_gradients:
            result.strain_gradients = g["strain_gradients"][a:b]
        return result

    def _array(self, name: str) -> Any:
        if name not in self._group:
            raise AttributeError(f"this store has no {name!r} (it was not computed)")
        array = self._group[name]
        if self.progress.complete:
            return array
        valid = self.progress.pairs if name.startswith("gradient_") else self.progress.rows
        return array[:valid]

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"structure index must be an integer, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"structure index {i} out of range for {n} structures")
        return int(i) % n
