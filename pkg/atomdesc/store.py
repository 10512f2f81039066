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
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .result import DescriptorResult

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
    """Features of consecutive structures, concatenated (what one task returns).

    Rows and pairs are local to the chunk; ``gradient_pairs[:, 0]`` is a row
    of this chunk's ``features``. ``errors`` lists ``(position in chunk,
    message)`` of the structures that failed; they have no rows.
    """

    features: np.ndarray
    centers: np.ndarray
    n_rows: np.ndarray  # rows per structure that succeeded
    n_atoms: np.ndarray
    gradient_pairs: np.ndarray | None = None
    gradient_values: np.ndarray | None = None
    n_pairs: np.ndarray | None = None
    strain_gradients: np.ndarray | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def n_structures(self) -> int:
        return len(self.n_atoms)


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
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return attrs.get("format") == FORMAT


def remove_store(path: str | Path) -> None:
    """Delete an atomdesc store; refuse to delete anything else."""
    path = Path(path)
    if not path.exists():
        return
    if not is_store(path):
        raise ValueError(f"{path} exists and is not an atomdesc feature store; not removing it")
    shutil.rmtree(path)


#: zarr writes every file as ``NAME.<32 hex digits>.partial`` and then renames it.
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

    Arrays grow by doubling their capacity (few metadata writes); the valid
    lengths are in the progress record, and :meth:`finish` trims the arrays
    to them and marks the store complete.
    """

    def __init__(self, group: Any, progress: Progress) -> None:
        self.group = group
        self.progress = progress
        # Every chunk written holds data: skip zarr's check of each chunk
        # against the fill value (a full comparison, as costly as compressing).
        self.arrays = {name: group[name].with_config({"write_empty_chunks": True})
                       for name in group.array_keys()}
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
        import zarr

        f = n_features
        per_append = dict(per_append or {"structures": 64, "rows": 1024, "pairs": 8192})
        if expected is not None:
            per_append = {"structures": expected.n_structures,
                          "rows": len(expected.features),
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
        progress = Progress()
        compressors: Any = _compressors(compressor)

        async def create_all() -> None:
            import asyncio

            group = await zarr.api.asynchronous.open_group(
                str(path), mode="w", zarr_format=3, attributes={
                    **attrs, "format": FORMAT, "format_version": FORMAT_VERSION,
                    "structure_columns": list(STRUCTURE_COLUMNS),
                    "progress": progress.to_json()})

            async def one(name: str, kind: str, tail: tuple[int, ...], dtype: str) -> None:
                row_bytes = int(np.prod(tail, dtype=np.int64)) * np.dtype(dtype).itemsize
                rows = storage_rows(per_append[kind], row_bytes)
                await group.create_array(
                    name, shape=(CAPACITY, *tail), chunks=(rows, *tail), dtype=dtype,
                    compressors=compressors, fill_value=0)

            await asyncio.gather(*(one(*spec) for spec in specs))

        _sync(create_all())
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        writer = cls(group, progress)
        zero = np.zeros(1, dtype=np.int64)
        writer._write([("offsets", 0, zero)] + ([("gradient_offsets", 0, zero)] if gradients else []))
        return writer

    @classmethod
    def open(cls, path: str | Path) -> StoreWriter:
        """Reopen an unfinished store to append to it after its last complete chunk.

        Temporary files a killed run left behind are removed first.
        """
        import zarr

        remove_partial_files(path)
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        return cls(group, Progress.from_json(dict(group.attrs["progress"])))

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    # ------------------------------------------------------------------ append

    def append(self, chunk: ChunkResult, frames: list[tuple[int, int]],
               next_position: tuple[int, int], skipped: list[dict[str, Any]]) -> None:
        """Write one chunk after the valid data, then record it in the progress.

        :param frames: ``(file number, frame index)`` of each structure of ``chunk``.
        :param next_position: where reading resumes after this chunk.
        :param skipped: invalid frames of this chunk (recorded in the metadata).
        """
        p = self.progress
        s0, r0, q0 = p.structures, p.rows, p.pairs
        s1 = s0 + chunk.n_structures
        rows = np.cumsum(chunk.n_rows, dtype=np.int64)
        file_index = np.asarray(frames, dtype=np.int64).reshape(-1, 2)
        writes = [
            ("features", r0, chunk.features),
            ("centers", r0, chunk.centers),
            ("offsets", s0 + 1, r0 + rows),
            ("structures", s0, np.column_stack([chunk.n_atoms, file_index])),
        ]
        n_pairs = 0
        if self.gradients:
            assert chunk.gradient_pairs is not None and chunk.n_pairs is not None
            pairs = chunk.gradient_pairs.copy()
            pairs[:, 0] += r0
            n_pairs = len(pairs)
            writes += [
                ("gradient_pairs", q0, pairs),
                ("gradient_values", q0, chunk.gradient_values),
                ("gradient_offsets", s0 + 1, q0 + np.cumsum(chunk.n_pairs, dtype=np.int64)),
            ]
        if self.strain_gradients:
            writes.append(("strain_gradients", r0, chunk.strain_gradients))
        self._write(writes)
        # Only now, with every array written, does the chunk count.
        p.chunks += 1
        p.structures = s1
        p.rows = r0 + int(rows[-1]) if len(rows) else r0
        p.pairs = q0 + n_pairs
        p.atoms += int(chunk.n_atoms.sum())
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
        """Trim every array to its valid length and mark the store complete."""
        p = self.progress
        lengths = {
            "features": p.rows, "centers": p.rows, "strain_gradients": p.rows,
            "offsets": p.structures + 1, "gradient_offsets": p.structures + 1,
            "structures": p.structures, "gradient_pairs": p.pairs, "gradient_values": p.pairs,
        }

        async def trim(name: str) -> None:
            array = self.arrays[name].async_array
            if array.shape[0] != lengths[name]:
                # Chunks past the end were never written (or hold an
                # interrupted chunk's data, which a resumed run overwrote).
                await array.resize((lengths[name], *array.shape[1:]),
                                   delete_outside_chunks=False)

        async def trim_all() -> None:
            import asyncio

            await asyncio.gather(*(trim(name) for name in self.arrays))

        _sync(trim_all())
        p.complete = True
        self._save_progress()

    def _write(self, writes: list[tuple[str, int, np.ndarray]]) -> None:
        """Write ``data`` at ``start`` of each named array, all arrays concurrently."""

        async def all_writes() -> None:
            import asyncio

            await asyncio.gather(*(
                self.arrays[name].async_array.setitem(slice(start, start + len(data)), data)
                for name, start, data in writes if len(data)
            ))

        _sync(all_writes())

    def _save_progress(self) -> None:
        self.group.attrs["progress"] = self.progress.to_json()


def _sync(coroutine: Any) -> Any:
    """Run a zarr coroutine on zarr's own event loop (what its sync API does)."""
    from zarr.core.sync import sync

    return sync(coroutine)


def _compressors(name: str | None) -> Any:
    if name in (None, "none"):
        return None
    if name == "zstd":
        from zarr.codecs import ZstdCodec

        return [ZstdCodec(level=1)]
    if name == "blosc":
        from zarr.codecs import BloscCodec

        # lz4 after byte shuffling: fast, and float64 gradients are mostly zeros
        return [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")]
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
