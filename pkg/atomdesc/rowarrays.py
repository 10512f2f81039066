"""Synchronous, append-only writing of zarr v3 arrays and group metadata.

The feature store is a plain zarr v3 directory and is read with zarr. Writing
it through zarr costs more than computing small datasets: every metadata and
chunk file goes through zarr's asyncio event loop, each append reads back the
partly filled last chunk, and the data are copied several times on the way.
The pipeline only ever appends rows after the valid ones, so this module
writes exactly the files zarr would (the same metadata documents and chunk
keys, chunks encoded with the same numcodecs codecs), directly and on the
calling thread:

* :class:`RowArray` keeps the partly filled last storage chunk in memory, so
  an append encodes each chunk it touches once, from the pieces it is given
  (no concatenation first), and never reads anything back;
* a file that may hold valid data when it is written (metadata, a partly
  filled chunk being rewritten) goes under a temporary name and is renamed,
  as zarr does (``NAME.<32 hex digits>.partial``), so a killed run never
  leaves it half-written; a chunk file wholly after the valid rows, and the
  metadata of a store that records nothing yet, are written in place: a
  killed run's half of one is never read, and is overwritten on resuming.
  Every file operation costs ~0.1-0.3 ms on an ordinary VM disk: that is
  most of what writing a small dataset costs;
* chunk files are encoded and written on two threads of this module
  (:func:`chunk_writers`), never on the main thread: numcodecs lets Blosc
  use its internal threads when called from the main thread, and those store
  a chunk's blocks in the order they finish, so the same data would give
  other bytes from one run to the next (still decoding to the same values).
  On any other thread Blosc compresses on that thread, deterministically,
  and the threads overlap encoding one chunk with writing another.

Only the zarr v3 format is relied on (metadata documents, the ``default``
chunk key encoding with ``.`` (or ``/``, earlier stores), the ``bytes`` codec
followed by ``blosc`` or ``zstd``), not zarr's internals; ``tests/test_dataset.py`` checks that the
files written here are byte for byte those zarr writes for the same data.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: The metadata document of every zarr v3 node.
META = "zarr.json"


def write_file(path: Path, data: Any, atomic: bool = True) -> None:
    """Write ``data`` (bytes-like) to ``path``: atomically (a temporary file, then
    renamed) or in place."""
    if not atomic:
        with open(path, "wb") as f:
            f.write(data)
        return
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, document: dict[str, Any], compact: bool = False,
               atomic: bool = True) -> None:
    """A metadata document, formatted as zarr formats it, or compact.

    Compact is for the group's large attributes (labels, provenance, progress),
    rewritten after every append: ``indent`` makes json use its pure-Python
    encoder, several milliseconds a write for the example dataset.
    """
    text = json.dumps(document, indent=None if compact else 2, allow_nan=True,
                      default=_json_default)
    write_file(path, text.encode(), atomic)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def group_metadata(attributes: dict[str, Any]) -> dict[str, Any]:
    """The ``zarr.json`` of a zarr v3 group."""
    return {"attributes": attributes, "zarr_format": 3, "node_type": "group"}


def codec_metadata(compressor: str | None, dtype: Any) -> list[dict[str, Any]]:
    """The ``codecs`` of an array: ``"lz4"`` (Blosc/LZ4, no shuffle), ``"zstd"`` or None."""
    codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if compressor == "lz4":
        codecs.append({"name": "blosc", "configuration": {
            "typesize": np.dtype(dtype).itemsize, "cname": "lz4", "clevel": 1,
            "shuffle": "noshuffle", "blocksize": 0}})
    elif compressor == "zstd":
        codecs.append({"name": "zstd", "configuration": {"level": 1, "checksum": False}})
    elif compressor is not None:
        raise ValueError(f"unknown compressor {compressor!r}")
    return codecs


def array_metadata(shape: Sequence[int], chunks: Sequence[int], dtype: Any,
                   codecs: list[dict[str, Any]], separator: str = ".") -> dict[str, Any]:
    """The ``zarr.json`` of a zarr v3 array (fill value 0), as zarr writes it.

    ``separator`` of the chunk keys: ``"."`` puts the chunk files side by side
    (``c.0.0``); with ``"/"`` (earlier atomdesc stores, still appended to)
    every chunk needed directories of its own, ~0.2 ms each to make here.
    """
    dtype = np.dtype(dtype)
    return {
        "shape": [int(n) for n in shape],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular",
                       "configuration": {"chunk_shape": [int(n) for n in chunks]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": separator}},
        "fill_value": 0.0 if dtype.kind == "f" else 0,
        "codecs": codecs,
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def encoder(codecs: list[dict[str, Any]]) -> Callable[[np.ndarray], Any]:
    """A function encoding one whole chunk (a C-contiguous array) to its file's bytes.

    :raises ValueError: for codecs this module cannot write (a store that
        atomdesc did not make); such a store can only be rewritten.
    """
    first, *rest = codecs
    if first.get("name") != "bytes" or first.get("configuration", {}).get(
            "endian", "little") != "little" or len(rest) > 1:
        raise ValueError(f"cannot append with the codecs {codecs}")
    if not rest:
        return lambda chunk: memoryview(chunk).cast("B")
    name, config = rest[0]["name"], rest[0].get("configuration", {})
    if name == "blosc":
        from numcodecs import Blosc

        codec: Any = Blosc(cname=config["cname"], clevel=config["clevel"],
                           shuffle=_SHUFFLE[config["shuffle"]],
                           blocksize=config.get("blocksize", 0), typesize=config["typesize"])
    elif name == "zstd":
        from numcodecs import Zstd

        codec = Zstd(level=config["level"], checksum=config.get("checksum", False))
    else:
        raise ValueError(f"cannot append with the codec {name!r}")
    return codec.encode


_CHUNK_WRITERS: ThreadPoolExecutor | None = None


def _forget_chunk_writers() -> None:
    """In a forked child: the pool's threads did not come along; a new pool is made."""
    global _CHUNK_WRITERS
    _CHUNK_WRITERS = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_chunk_writers)


def chunk_writers() -> ThreadPoolExecutor:
    """The threads that encode and write chunk files (made on first use, shared).

    Two: they keep up with the thread gathering the chunks' rows (one, two
    and four wrote the bundled example's gradients in the same time here,
    four with more CPU).
    """
    global _CHUNK_WRITERS
    if _CHUNK_WRITERS is None:
        _CHUNK_WRITERS = ThreadPoolExecutor(max_workers=2,
                                            thread_name_prefix="atomdesc-chunk-writer")
    return _CHUNK_WRITERS


class RowArray:
    """An array of a store written by appending rows after its ``length`` valid ones.

    The last storage chunk, when partly filled, is kept in memory (and written
    as a whole chunk, zeros after the valid rows, at the end of every append),
    so appends never read from disk. A writer reopened on an existing array
    reads that chunk once, keeping only its valid rows: what it writes is then
    the same as an uninterrupted run, whatever an interrupted one left after
    the valid rows.
    """

    def __init__(self, path: str | Path, length: int, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = read_json(self.path / META) if meta is None else meta
        self.shape = tuple(self.meta["shape"])
        self.chunk_rows = int(self.meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        chunk_tail = tuple(self.meta["chunk_grid"]["configuration"]["chunk_shape"][1:])
        if chunk_tail != self.shape[1:]:
            raise ValueError(f"{self.path}: chunks must span all but the first axis")
        encoding = self.meta["chunk_key_encoding"]
        self._separator = encoding.get("configuration", {}).get("separator", "/")
        if encoding.get("name") != "default" or self._separator not in "/.":
            raise ValueError(f"{self.path}: cannot append with this chunk key encoding")
        self.dtype = np.dtype(self.meta["data_type"])
        self.encode = encoder(self.meta["codecs"])
        self.length = int(length)
        self._suffix = ("0",) * (len(self.shape) - 1)
        self._dirs: set[Path] = {self.path}
        self._buffer: np.ndarray | None = None
        self._spare: list[np.ndarray] = []  # chunk buffers written and free again
        self._pending: list[Future[None]] = []
        filled = self.length % self.chunk_rows
        if filled:
            import zarr

            start = self.length - filled
            self._buffer = self._empty()
            self._buffer[:filled] = zarr.open_array(str(self.path), mode="r")[start:self.length]

    @classmethod
    def create(cls, path: str | Path, shape: Sequence[int], chunks: Sequence[int], dtype: Any,
               codecs: list[dict[str, Any]]) -> RowArray:
        """A new array in a new store (its metadata written in place: see the module's notes)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = array_metadata(shape, chunks, dtype, codecs)
        write_json(path / META, meta, atomic=False)
        return cls(path, 0, meta)

    def _empty(self) -> np.ndarray:
        return np.zeros((self.chunk_rows, *self.shape[1:]), dtype=self.dtype)

    def append(self, pieces: Sequence[np.ndarray], wait: bool = True) -> None:
        """Write ``pieces`` (arrays of rows, in order) after the valid rows.

        Whole chunks lying inside one piece are encoded from it directly; the
        rows of every other chunk are gathered into a chunk buffer with one
        copy (``np.concatenate`` into it).

        :param wait: return once the files are written; with False, call
            :meth:`wait` before relying on them (or appending again), and keep
            ``pieces`` unchanged until then.
        """
        self.wait()
        c = self.chunk_rows
        index, filled = divmod(self.length, c)  # the chunk being filled, and its rows so far
        group: list[np.ndarray] = []  # rows for that chunk after ``filled``
        count = 0
        for piece in pieces:
            n, i = len(piece), 0
            while i < n:
                if filled == 0 and count == 0 and n - i >= c:
                    self._put(index, np.ascontiguousarray(piece[i:i + c], dtype=self.dtype))
                    index += 1
                    i += c
                    continue
                take = min(c - filled - count, n - i)
                group.append(piece[i:i + take])
                count += take
                i += take
                if filled + count == c:
                    buffer = self._chunk_buffer()
                    np.concatenate(group, out=buffer[filled:], casting="same_kind")
                    self._buffer = None  # it is being written: the next chunk gets another
                    self._put(index, buffer, reuse=True)
                    index += 1
                    group, count, filled = [], 0, 0
        if count:
            buffer = self._chunk_buffer()
            np.concatenate(group, out=buffer[filled:filled + count], casting="same_kind")
            filled += count
            buffer[filled:] = 0
            self._put(index, buffer)
        self.length = index * c + filled
        if wait:
            self.wait()

    def wait(self) -> None:
        """Wait until every chunk file of the appends so far is written, then raise the
        first error (none is left writing after an error is raised)."""
        pending, self._pending = self._pending, []
        wait_for(pending)
        for future in pending:
            future.result()

    def _chunk_buffer(self) -> np.ndarray:
        if self._buffer is None:
            # a buffer already written to keeps its pages (a new one faults them in)
            self._buffer = self._spare.pop() if self._spare else self._empty()
        return self._buffer

    def _put(self, index: int, chunk: np.ndarray, reuse: bool = False) -> None:
        """Have chunk ``index`` encoded and written; ``reuse``: ``chunk`` is a buffer to
        use again once written."""
        path = self.path / self._separator.join(("c", str(index), *self._suffix))
        if path.parent not in self._dirs:  # stores with "/" keys only
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        # a chunk holding rows valid before this append is replaced atomically
        atomic = index * self.chunk_rows < self.length
        encode, spare = self.encode, self._spare

        def write() -> None:
            write_file(path, encode(chunk), atomic=atomic)
            if reuse:
                spare.append(chunk)

        self._pending.append(chunk_writers().submit(write))

    def resize(self, rows: int) -> None:
        """Set the length of the first axis in the metadata (chunk files are left as they are)."""
        self.wait()
        self.meta["shape"] = [int(rows), *self.shape[1:]]
        self.shape = tuple(self.meta["shape"])
        write_json(self.path / META, self.meta)
