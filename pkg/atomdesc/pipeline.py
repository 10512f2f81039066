"""The dataset pipeline: featurize many structures into a feature store.

Frames are read (:mod:`atomdesc.io`: large inputs lazily, by a child process;
small ones whole, see :data:`PARSE_IN_CHILD_BYTES`), grouped into chunks of
consecutive structures, computed in parallel (threads locally, or the workers
of a ``dask.distributed.Client``) and appended to a zarr store
(:mod:`atomdesc.store`) in input order, several computed chunks per append
(about :data:`APPEND_BYTES` of results). At most a few chunks are in flight,
so memory does not grow with the dataset. After each append's data the store
records how far it got; running the same call again resumes there.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase.data import atomic_numbers

from .descriptor import ComputedPart, Descriptor, max_threads
from .io import Frame, FrameReadError, FrameSource, Position, file_signature
from .result import DescriptorResult
from .store import (ChunkResult, FeatureStore, Progress, StoreWriter, is_store,
                    read_attributes, remove_store)
from .system import System

#: Most structures in one chunk by default.
DEFAULT_CHUNK_SIZE = 10_000
#: Default budget of one chunk's results; sets how many atoms a chunk holds.
CHUNK_BYTES = 32 << 20
#: Most atoms in one computed chunk by default: a small dataset is then
#: several chunks, computed on all threads and written while the next compute
#: (512 was faster than 256 and 1024 on the bundled example, measured).
COMPUTE_ATOMS = 512
#: Fewest atoms a chunk closed for its bytes holds (very wide features would
#: otherwise make one chunk per structure).
MIN_CHUNK_ATOMS = 64
#: Gradient pairs per atom assumed when sizing chunks (dense solids have ~50-100).
PAIRS_PER_ATOM = 64
#: Computed chunks are gathered and appended to the store together until
#: their results hold this many bytes: zarr's cost is per append more than per
#: byte, and a chunk sized for dense solids holds far less for molecules.
#: Resuming restarts at the last append. 0: one append per chunk. (32 MB was
#: no faster, and held ~55 MB more at the peak, measured with gradients.)
APPEND_BYTES = 16 << 20

#: Input files of at least this many bytes in all are parsed in a child
#: process (:meth:`FrameSource.frames`): ASE's parsers are pure Python
#: (extxyz: ~2 MB/s here) and would otherwise take turns for the GIL with the
#: computing and writing; the child costs ~0.75 s to start (importing ASE).
PARSE_IN_CHILD_BYTES = 4 << 20


def default_chunk_atoms(n_features: int, gradients: bool, strain_gradients: bool) -> int:
    """Atoms per chunk so that one chunk's results take about :data:`CHUNK_BYTES`."""
    per_atom = _atom_bytes(n_features, gradients, strain_gradients, PAIRS_PER_ATOM)
    return max(MIN_CHUNK_ATOMS, CHUNK_BYTES // per_atom)


def _atom_bytes(n_features: int, gradients: bool, strain_gradients: bool, pairs: int) -> int:
    return 8 * n_features * (1 + (3 * pairs if gradients else 0) + (9 if strain_gradients else 0))


def structure_bytes(n_features: int, gradients: bool,
                    strain_gradients: bool) -> Callable[[Any], int]:
    """Estimated bytes of a structure's results, to close chunks at :data:`CHUNK_BYTES`.

    An atom of a molecule has at most as many gradient pairs as the molecule
    has atoms (every atom within the cutoff, itself included); periodic
    structures are assumed to have :data:`PAIRS_PER_ATOM`. Assuming that for
    molecules too made gradient chunks of small molecules 3-8 times smaller
    than their budget (178 atoms with the bundled ACSF), and the pipeline
    slower for their number.
    """
    def estimate(atoms: Any) -> int:
        n = len(atoms)
        pairs = PAIRS_PER_ATOM if any(atoms.pbc) else min(n, PAIRS_PER_ATOM)
        return n * _atom_bytes(n_features, gradients, strain_gradients, pairs)
    return estimate


@dataclass
class DatasetSummary:
    """What :func:`featurize_dataset` did."""

    path: str
    structures: int
    atoms: int
    rows: int
    n_features: int
    computed_structures: int
    computed_atoms: int
    elapsed: float
    skipped: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False
    up_to_date: bool = False

    def __str__(self) -> str:
        if self.up_to_date:
            head = (f"{self.path} is already complete: {self.structures} structures, "
                    f"{self.atoms} atoms, {self.n_features} features (nothing to do; "
                    "use --overwrite to recompute)")
            return head
        rate_s = self.computed_structures / self.elapsed if self.elapsed > 0 else float("inf")
        rate_a = self.computed_atoms / self.elapsed if self.elapsed > 0 else float("inf")
        lines = [
            f"featurized {self.computed_structures} structures ({self.computed_atoms} atoms) "
            f"in {self.elapsed:.2f} s: {rate_s:,.0f} structures/s, {rate_a:,.0f} atoms/s"
            + (" (resumed)" if self.resumed else ""),
            f"store: {self.structures} structures, {self.atoms} atoms, {self.rows} rows x "
            f"{self.n_features} features",
        ]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} invalid frames (listed in the store's "
                         "metadata, store.skipped)")
        return "\n".join(lines)


def featurize_dataset(
    source: Any,
    descriptor: Descriptor | dict[str, Any],
    store: str | Path,
    client: Any = None,
    *,
    gradients: bool = False,
    strain_gradients: bool = False,
    average: str | None = None,
    center_species: list[str | int] | None = None,
    n_threads: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_atoms: int | None = None,
    skip_invalid: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    format: str | None = None,
    compressor: str | None = "blosc",
) -> DatasetSummary:
    """Featurize a dataset of any size into a chunked zarr store.

    :param source: what to read: a path (extxyz, ASE db, CIF, POSCAR, anything
        ASE reads), a glob, a list of paths, or a list of :class:`ase.Atoms`
        (or a :class:`~atomdesc.io.FrameSource`).
    :param descriptor: a descriptor, or its hyper-parameters (with ``"family"``).
    :param store: the output directory (``.zarr``).
    :param client: a ``dask.distributed.Client``: chunks are computed on its
        workers (the result is bitwise identical to a local run). ``None``
        computes locally on threads.
    :param gradients: also store position gradients (sparse, result layout).
    :param strain_gradients: also store strain gradients.
    :param average: ``"mean"`` or ``"sum"`` to store one row per structure.
    :param center_species: describe only atoms of these species.
    :param n_threads: local threads (default: ``OMP_NUM_THREADS`` or the cores);
        each computes one chunk at a time, with one kernel thread (the last
        chunk, which the run waits for, with those no other chunk is using).
    :param chunk_size: most structures per chunk (the unit of work; default 10 000).
    :param chunk_atoms: a chunk is closed when it holds this many atoms; by
        default when it holds :data:`COMPUTE_ATOMS` (512), or earlier when its
        results would exceed 32 MB (estimated from the number of features,
        with 64 gradient pairs per atom of a periodic structure and, for a
        molecule, at most as many per atom as it has atoms, see
        :func:`structure_bytes`), which bounds memory whatever the dataset.
        Computed chunks are appended to the store together until they hold
        about 16 MB (the unit of writing and of resuming). Memory holds at
        most ``n_threads + 2`` chunks and one append locally, and two chunks
        per worker thread with Dask.
    :param skip_invalid: record unreadable or invalid frames in the store's
        metadata and go on, instead of stopping with an error.
    :param overwrite: recompute a store that exists (finished or not) from scratch.
    :param progress: show a progress bar; ``None`` shows it when stderr is a terminal.
    :param format: ASE format name, when it cannot be guessed from the file names.
        Input files of 4 MB or more in all (:data:`PARSE_IN_CHILD_BYTES`) are
        parsed by ASE in a child process, beside the computing; smaller ones
        are read whole before computing starts.
    :param compressor: ``"blosc"`` (lz4, default: fast), ``"zstd"`` (smaller) or ``None``.
    :return: a :class:`DatasetSummary`.
    :raises FrameReadError: for an unreadable or invalid frame (naming the file
        and frame index) unless ``skip_invalid``.
    :raises ValueError: if ``store`` holds a different computation and not ``overwrite``.

    Running the same call again after an interruption computes only the
    chunks that are missing; on a finished store it does nothing.
    """
    import zarr  # noqa: F401  (imported before the clock starts: it takes a while)

    frames = source if isinstance(source, FrameSource) else FrameSource(source, format=format)
    input_bytes = frames.nbytes
    if input_bytes:  # files to read: ASE's readers take ~0.5 s to import (SciPy), which
        import ase.io  # noqa: F401  # the summary's rate would otherwise count as featurizing
    started = time.perf_counter()
    d = _as_descriptor(descriptor)
    options = _check_options(d, gradients, strain_gradients, average, center_species)
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    # Storage chunks are sized to the chunks' byte budget; the chunks computed
    # are smaller by default, so that even small sets spread over the threads.
    storage_atoms = chunk_atoms or default_chunk_atoms(d.n_features, gradients,
                                                       strain_gradients)
    chunk_bytes = None
    if chunk_atoms is None:
        chunk_atoms = COMPUTE_ATOMS
        chunk_bytes = structure_bytes(d.n_features, gradients, strain_gradients)
    if n_threads is not None and (int(n_threads) != n_threads or n_threads < 1):
        raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")

    attrs = {
        "hypers": d.hypers,
        "family": d.name,
        "n_features": d.n_features,
        "feature_labels": json.loads(json.dumps(d.feature_labels)),
        "feature_label_names": list(d.feature_label_names),
        "atomdesc_version": _version(),
        "inputs": list(frames.files),
        "input_signatures": [file_signature(f) for f in frames.files],
        "options": options,
    }
    path = Path(store)
    writer, resumed = _open_writer(path, attrs, d, options, overwrite)
    if writer is not None and writer.progress.complete:
        return _summary(store, writer, 0, 0, time.perf_counter() - started, resumed,
                        up_to_date=True)
    position = Position() if writer is None else Position(writer.progress.next_file,
                                                          writer.progress.next_index)

    runner = _DaskRunner(client, d) if client is not None else _LocalRunner(d, n_threads)
    bar = _progress_bar(progress)
    # One thread writes the chunks in input order; zarr's file writes release
    # the GIL, so writing overlaps with computing the next chunks. A new store
    # is created on that thread while the first chunk computes, its storage
    # chunks sized to what a chunk is expected to hold.
    io_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atomdesc-writer")
    done: dict[str, Any] = {"structures": 0, "atoms": 0, "failed": False, "writer": writer}

    def create() -> None:
        try:
            structures = min(chunk_size, storage_atoms)
            done["writer"] = StoreWriter.create(
                path, n_features=d.n_features, attrs=attrs, gradients=options["gradients"],
                strain_gradients=options["strain_gradients"], compressor=compressor,
                per_append={"structures": structures,
                            "rows": structures if average else storage_atoms,
                            "pairs": storage_atoms * PAIRS_PER_ATOM if gradients else 0})
        except BaseException:
            done["failed"] = True
            raise

    batch = _Batch()

    def flush() -> None:
        n_s, n_a = batch.flush(done["writer"])
        done["structures"] += n_s
        done["atoms"] += n_a

    def write(chunk_frames: list[Frame], next_position: tuple[int, int], future: Any) -> None:
        if done["failed"]:  # never append after a chunk that failed: order is the format
            return
        try:
            chunk = future.result() if future is not None else None
            try:
                written, skipped = _check(frames, chunk_frames, chunk, skip_invalid)
            except FrameReadError:
                flush()  # the chunks before the bad frame stay in the store
                raise
            batch.add(chunk, written, next_position, skipped)
            if batch.nbytes >= APPEND_BYTES:
                flush()
        except BaseException:
            done["failed"] = True
            raise
        if chunk is not None:
            _update_bar(bar, chunk.n_structures, int(chunk.n_atoms.sum()), started)

    pending: deque[tuple[Any, Any]] = deque()
    stream = frames.frames(position, in_process=input_bytes >= PARSE_IN_CHILD_BYTES)
    if 0 < input_bytes < PARSE_IN_CHILD_BYTES:
        stream = _read_whole(stream)
    try:
        chunks = _chunks(stream, chunk_size, chunk_atoms, len(frames.files), chunk_bytes)
        submitted = False
        for chunk_frames, next_position in chunks:
            good = [f.atoms for f in chunk_frames if f.atoms is not None]
            last = next_position[0] == len(frames.files)
            future = runner.submit(good, options, last) if good else None
            if writer is None and not submitted:
                # a new store is made while the first chunk computes, not while
                # the input is read (its Python would wait for ASE's for the GIL)
                pending.append((None, io_thread.submit(create)))
            pending.append((future, io_thread.submit(write, chunk_frames, next_position, future)))
            submitted = True
            while len(pending) >= runner.max_in_flight:
                pending.popleft()[1].result()
        while pending:
            pending.popleft()[1].result()
        if not submitted and writer is None:  # no input at all: an empty, complete store
            io_thread.submit(create).result()
            write([], (len(frames.files), 0), None)
        flush()
        writer = done["writer"]
        writer.finish()
    finally:
        stream.close()  # a reading child process stops here, whatever happened
        for future, written in pending:
            written.cancel()
            runner.cancel(future)
        io_thread.shutdown(wait=True, cancel_futures=True)
        runner.close()
        if bar is not None:
            bar.close()
    return _summary(store, writer, done["structures"], done["atoms"],
                    time.perf_counter() - started, resumed)


# ------------------------------------------------------------ chunk compute


_DESCRIPTORS: dict[str, Descriptor] = {}
_POOLS: dict[int, ThreadPoolExecutor] = {}
if hasattr(os, "register_at_fork"):  # a forked child has none of the pools' threads
    os.register_at_fork(after_in_child=_POOLS.clear)


def compute_chunk(
    descriptor: Descriptor | dict[str, Any], structures: list[Any], options: dict[str, Any],
    n_threads: int = 1,
) -> ChunkResult:
    """Compute consecutive structures into one :class:`ChunkResult` (one task).

    The chunk goes through :meth:`Descriptor.compute_parts` as one list
    (molecules and small cells batched, larger periodic structures sharing
    ``n_threads`` threads); every
    centre is computed independently, so results do not depend on where or
    how parallel the chunk runs. A structure whose input is invalid gets no
    rows and an entry in ``errors`` (the chunk is then computed structure by
    structure).
    """
    d = _as_descriptor(descriptor)
    if structures and not options["center_species"]:
        # The whole chunk in one call: small structures are then batched into few
        # kernel calls (bit-identical to one call per structure, whatever the
        # threads), and a batch is stored as computed, without cutting it into
        # one result per structure. An invalid structure makes the call fail:
        # then one by one.
        try:
            parts = d.compute_parts(structures, gradients=options["gradients"],
                                    strain_gradients=options["strain_gradients"],
                                    n_threads=n_threads)
        except ValueError:
            pass
        else:
            if [k for part in parts for k in part.indices] != list(range(len(structures))):
                # batches and single structures mixed: restore the input order
                parts = _one_part_each(parts)
            if options["average"]:
                parts = [_as_part(_reduce(part.result, options["average"]))
                         for part in _one_part_each(parts)]
            return _assemble(parts, d.n_features, options)
    if n_threads > 1 and len(structures) > 1:
        pool = _POOLS.get(n_threads)
        if pool is None:
            pool = _POOLS[n_threads] = ThreadPoolExecutor(max_workers=n_threads)
        outcomes = list(pool.map(lambda a: _compute_structure(d, a, options), structures))
    else:
        outcomes = [_compute_structure(d, a, options) for a in structures]
    return _assemble([_as_part(r) for r in outcomes], d.n_features, options)


def _compute_structure(d: Descriptor, atoms: Any, options: dict[str, Any]) -> Any:
    try:
        centers = None
        if options["center_species"]:
            system = System.from_atoms(atoms)
            d.check_species(system)
            centers = np.flatnonzero(np.isin(system.numbers, options["center_numbers"]))
            if centers.size == 0:
                if options["average"]:
                    raise ValueError(
                        f"no atom of species {options['center_species']} to average over"
                    )
                return len(system)
            atoms = system
        result = d.compute(atoms, centers=centers, gradients=options["gradients"],
                           strain_gradients=options["strain_gradients"], n_threads=1)
        if options["average"]:
            result = result.reduce(options["average"])
        return result
    except ValueError as exc:
        return exc


def _reduce(result: Any, how: str) -> Any:
    try:
        return result.reduce(how)
    except ValueError as exc:
        return exc


def _one_part_each(parts: list[ComputedPart]) -> list[ComputedPart]:
    """Parts of one structure each, in input order."""
    single = [ComputedPart([k], r) for part in parts
              for k, r in zip(part.indices, part.results())]
    return sorted(single, key=lambda part: part.indices[0])


def _as_part(outcome: Any) -> Any:
    """A structure's result as a part of its own (an exception or an int stays as it is)."""
    return ComputedPart([0], outcome) if isinstance(outcome, DescriptorResult) else outcome


def _assemble(parts: list[Any], n_features: int, options: dict[str, Any]) -> ChunkResult:
    """The parts of a chunk (in input order) as one :class:`ChunkResult`.

    A part is a :class:`ComputedPart` (one structure, or a batch of them,
    each block stored as computed), an exception (the structure failed), or
    an int (the atoms of a structure without centres of the selected species).
    """
    features, centers, n_rows, n_atoms, errors = [], [], [], [], []
    pairs, values, n_pairs, strain = [], [], [], []
    position = rows_before = 0
    for part in parts:
        if isinstance(part, Exception):
            errors.append((position, str(part)))
            position += 1
            continue
        if isinstance(part, int):  # a structure of `part` atoms without rows
            n_atoms.append(np.array([part], dtype=np.int64))
            n_rows.append(np.zeros(1, dtype=np.int64))
            n_pairs.append(np.zeros(1, dtype=np.int64))
            position += 1
            continue
        r = part.result
        if part.molecules is None:
            counts = np.array([len(r.centers)], dtype=np.int64)
            sizes = np.array([r.n_atoms], dtype=np.int64)
            centers.append(np.asarray(r.centers, dtype=np.int64))
            first_atom = np.zeros(1, dtype=np.int64)
        else:
            counts = np.fromiter(map(len, part.molecules), dtype=np.int64,
                                 count=len(part.molecules))
            first_atom = np.asarray(part.atom_start, dtype=np.int64)
            sizes = np.diff(first_atom)
            centers.append(np.concatenate(part.molecules).astype(np.int64, copy=False))
        features.append(r.features)
        n_rows.append(counts)
        n_atoms.append(sizes)
        if options["gradients"]:
            # rows of the chunk; atoms of each pair's own structure
            molecule = np.repeat(np.arange(len(counts)), counts)[r.gradient_pairs[:, 0]]
            local = r.gradient_pairs - np.column_stack([np.full(len(molecule), -rows_before),
                                                        first_atom[molecule]])
            pairs.append(local)
            values.append(r.gradient_values)
            n_pairs.append(np.bincount(molecule, minlength=len(counts)))
        if options["strain_gradients"]:
            strain.append(r.strain_gradients)
        rows_before += int(counts.sum())
        position += len(counts)
    chunk = ChunkResult(
        features=features,
        centers=_cat(centers, (0,), np.int64),
        n_rows=_cat(n_rows, (0,), np.int64),
        n_atoms=_cat(n_atoms, (0,), np.int64),
        errors=errors,
    )
    if options["gradients"]:
        chunk.gradient_pairs = _cat(pairs, (0, 2), np.int64)
        chunk.gradient_values = values
        chunk.n_pairs = _cat(n_pairs, (0,), np.int64)
    if options["strain_gradients"]:
        chunk.strain_gradients = strain
    return chunk


def _cat(arrays: list[np.ndarray], empty: tuple[int, ...], dtype: Any) -> np.ndarray:
    if not arrays:
        return np.zeros(empty, dtype=dtype)
    return np.ascontiguousarray(np.concatenate(arrays), dtype=dtype)


# ------------------------------------------------------------------ runners


class _Runner:
    """What both runners share: futures with ``result()`` and ``cancel()``."""

    @staticmethod
    def result(future: Any) -> ChunkResult:
        return future.result()

    @staticmethod
    def cancel(future: Any) -> None:
        if future is not None:
            future.cancel()


class _LocalRunner(_Runner):
    """Chunks computed on ``n_threads`` threads, one kernel thread each, while more are read.

    One chunk per thread, as the Dask workers do, rather than one chunk at a
    time on all threads: the kernels' OpenMP threads then never spin waiting
    between chunks on cores the reading and writing need (with two threads
    per chunk on the bundled example, they burnt as much CPU as the kernels
    themselves), and the results are the same whatever the threads. Only the
    last chunk, which the run waits for once the input is read, gets more: the
    threads no other chunk is using when it starts. (Every thread regardless
    put three threads on two cores while the chunk before it still ran: the
    bundled example with gradients took 71-86 ms instead of 65-69.)
    """

    def __init__(self, d: Descriptor, n_threads: int | None) -> None:
        self.d = d
        self.n_threads = n_threads or max_threads()
        self.pool = ThreadPoolExecutor(max_workers=self.n_threads,
                                       thread_name_prefix="atomdesc-compute")
        #: A chunk computed per thread, one read, one written.
        self.max_in_flight = self.n_threads + 2
        self._running = 0
        self._lock = threading.Lock()

    def submit(self, structures: list[Any], options: dict[str, Any], last: bool) -> Any:
        return self.pool.submit(self._compute, structures, options, last)

    def _compute(self, structures: list[Any], options: dict[str, Any], last: bool) -> ChunkResult:
        with self._lock:
            threads = max(1, self.n_threads - self._running) if last else 1
            self._running += 1
        try:
            return compute_chunk(self.d, structures, options, threads)
        finally:
            with self._lock:
                self._running -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _DaskRunner(_Runner):
    """Chunks computed on the workers of a ``dask.distributed.Client``."""

    def __init__(self, client: Any, d: Descriptor) -> None:
        self.client = client
        self.hypers = d.hypers
        threads = sum(client.nthreads().values()) or 1
        self.max_in_flight = max(2, 2 * threads)

    def submit(self, structures: list[Any], options: dict[str, Any], last: bool) -> Any:
        # Only what the computation reads travels to the workers.
        payload = [_bare_atoms(a) for a in structures]
        return self.client.submit(compute_chunk, self.hypers, payload, options, 1, pure=False)

    def close(self) -> None:
        pass


def _bare_atoms(atoms: Any) -> Any:
    from ase import Atoms

    return Atoms(numbers=np.asarray(atoms.numbers), positions=np.asarray(atoms.positions),
                 cell=np.asarray(atoms.cell[:]), pbc=np.asarray(atoms.pbc))


# ----------------------------------------------------------------- helpers


def _chunks(frames: Iterator[Frame], size: int, max_atoms: int, n_files: int,
            bytes_of: Callable[[Any], int] | None = None,
            ) -> Iterator[tuple[list[Frame], tuple[int, int]]]:
    """Consecutive frames in chunks, each with the position of the frame after it.

    A chunk closes at ``size`` frames, ``max_atoms`` atoms, or (with
    ``bytes_of``, estimated results of a structure) :data:`CHUNK_BYTES` once it
    holds :data:`MIN_CHUNK_ATOMS` atoms.
    """
    chunk: list[Frame] = []
    atoms = nbytes = 0
    for frame in frames:
        if chunk and (len(chunk) >= size or atoms >= max_atoms
                      or (nbytes >= CHUNK_BYTES and atoms >= MIN_CHUNK_ATOMS)):
            yield chunk, (frame.file_number, frame.index)
            chunk, atoms, nbytes = [], 0, 0
        chunk.append(frame)
        if frame.atoms is not None:
            atoms += len(frame.atoms)
            nbytes += bytes_of(frame.atoms) if bytes_of is not None else 0
    if chunk:
        yield chunk, (n_files, 0)


def _read_whole(stream: Iterator[Frame]) -> Iterator[Frame]:
    """The frames of a small input, all read before the first is given.

    ASE's parsing is pure Python: computing and writing chunks beside it
    wait for the GIL (each wait up to a switch interval) and slow the reading
    down more than the overlap saves. Read first, the chunks are computed on
    every thread with nothing in their way (bundled example with gradients:
    78 -> 72 ms, 10 000 atoms 635 -> 606 ms, medians; the bare loop 67 and
    521 ms). Small inputs only: they are held whole.
    """
    frames = list(stream)
    yield from frames


def _check(source: FrameSource, frames: list[Frame], chunk: ChunkResult | None,
           skip_invalid: bool) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
    """Check a computed chunk: (file, frame) of its structures, and its skipped frames.

    :raises FrameReadError: for its first invalid frame, unless ``skip_invalid``.
    """
    good = [f for f in frames if f.atoms is not None]
    bad: list[tuple[Frame, str]] = [(f, f.error or "cannot read") for f in frames
                                    if f.atoms is None]
    failed = {pos for pos, _ in chunk.errors} if chunk is not None else set()
    if chunk is not None:
        bad.extend((good[pos], message) for pos, message in chunk.errors)
    if bad:
        bad.sort(key=lambda fm: (fm[0].file_number, fm[0].index))
        if not skip_invalid:
            frame, message = bad[0]
            raise FrameReadError(source.files[frame.file_number], frame.index, message)
    skipped = [{"file": source.files[f.file_number], "index": f.index, "error": m}
               for f, m in bad]
    written = [(f.file_number, f.index) for pos, f in enumerate(good) if pos not in failed]
    return written, skipped


class _Batch:
    """Computed chunks waiting to be appended to the store together, in order."""

    def __init__(self) -> None:
        self.chunks: list[ChunkResult] = []
        self.frames: list[tuple[int, int]] = []
        self.skipped: list[dict[str, Any]] = []
        self.next_position: tuple[int, int] | None = None
        self.nbytes = 0

    def add(self, chunk: ChunkResult | None, frames: list[tuple[int, int]],
            next_position: tuple[int, int], skipped: list[dict[str, Any]]) -> None:
        if chunk is not None and chunk.n_structures:
            self.chunks.append(chunk)
            self.nbytes += chunk.nbytes
        self.frames.extend(frames)
        self.skipped.extend(skipped)
        self.next_position = next_position

    def flush(self, writer: StoreWriter) -> tuple[int, int]:
        """Append what is gathered as one chunk; return (structures, atoms) written."""
        if self.next_position is None:
            return 0, 0
        chunks, frames, position, skipped = (self.chunks, self.frames, self.next_position,
                                             self.skipped)
        self.__init__()  # type: ignore[misc]
        if not chunks:
            writer.skip(position, skipped)
            return 0, 0
        n_atoms = sum(int(c.n_atoms.sum()) for c in chunks)
        n_structures = sum(c.n_structures for c in chunks)
        writer.append(chunks, frames, position, skipped)
        return n_structures, n_atoms


def _open_writer(path: Path, attrs: dict[str, Any], d: Descriptor, options: dict[str, Any],
                 overwrite: bool) -> tuple[StoreWriter | None, bool]:
    """The writer of an existing store to resume, or None for a new store."""
    if path.exists() and overwrite:
        remove_store(path)
    if path.exists():
        if not is_store(path):
            raise ValueError(f"{path} exists and is not an atomdesc feature store")
        old = read_attributes(path)
        progress = Progress.from_json(dict(old["progress"]))
        for key, what in (("hypers", "hyper-parameters"), ("options", "options"),
                          ("inputs", "input files"), ("input_signatures", "input files")):
            if old.get(key) != attrs[key]:
                state = "finished" if progress.complete else "unfinished"
                raise ValueError(
                    f"{path} holds a {state} run with other {what}; use overwrite=True "
                    "(--overwrite) to replace it, or another output path"
                )
        if progress.chunks == 0 and not progress.complete:
            # killed before its first append (maybe while creating its arrays):
            # nothing to keep, so it is made again
            remove_store(path)
            return None, False
        return StoreWriter.open(path), True
    return None, False


def _check_options(d: Descriptor, gradients: bool, strain_gradients: bool, average: str | None,
                   center_species: list[str | int] | None) -> dict[str, Any]:
    if gradients and not d.supports_gradients:
        raise ValueError(f"family {d.name!r} does not provide position gradients")
    if strain_gradients and not d.supports_strain_gradients:
        raise ValueError(f"family {d.name!r} does not provide strain gradients")
    if average not in (None, "mean", "sum"):
        raise ValueError(f"average must be 'mean', 'sum' or None, got {average!r}")
    species: list[str] = []
    if center_species:
        from .descriptor import normalise_species

        species = normalise_species(center_species)
        unknown = [s for s in species if s not in d.species]
        if unknown:
            raise ValueError(f"center_species {unknown} are not in the descriptor's "
                             f"species {d.species}")
    return {
        "gradients": bool(gradients),
        "strain_gradients": bool(strain_gradients),
        "average": average,
        "center_species": species,
        "center_numbers": [atomic_numbers[s] for s in species],
    }


def _as_descriptor(descriptor: Descriptor | dict[str, Any]) -> Descriptor:
    if isinstance(descriptor, Descriptor):
        return descriptor
    if isinstance(descriptor, dict):
        key = json.dumps(descriptor, sort_keys=True)
        d = _DESCRIPTORS.get(key)
        if d is None:
            from . import descriptor_from_hypers

            d = _DESCRIPTORS[key] = descriptor_from_hypers(descriptor)
        return d
    raise TypeError(f"descriptor must be a Descriptor or its hypers, got {type(descriptor).__name__}")


def _version() -> str:
    from . import __version__

    return __version__


def _progress_bar(progress: bool | None) -> Any:
    if progress is False:
        return None
    from tqdm.auto import tqdm

    # disable=None: tqdm stays quiet when stderr is not a terminal.
    return tqdm(unit=" structures", disable=None if progress is None else False,
                dynamic_ncols=True)


def _update_bar(bar: Any, structures: int, atoms: int, started: float) -> None:
    if bar is None or bar.disable:
        return
    bar.atoms = getattr(bar, "atoms", 0) + atoms
    elapsed = max(time.perf_counter() - started, 1e-9)
    bar.set_postfix_str(f"{bar.atoms / elapsed:,.0f} atoms/s", refresh=False)
    bar.update(structures)


def _summary(store: str | Path, writer: StoreWriter, computed_structures: int,
             computed_atoms: int, elapsed: float, resumed: bool,
             up_to_date: bool = False) -> DatasetSummary:
    p = writer.progress
    return DatasetSummary(
        path=str(store), structures=p.structures, atoms=p.atoms, rows=p.rows,
        n_features=int(writer.attrs["n_features"]),
        computed_structures=computed_structures, computed_atoms=computed_atoms,
        elapsed=elapsed, skipped=list(p.skipped), resumed=resumed, up_to_date=up_to_date,
    )


__all__ = ["DatasetSummary", "FeatureStore", "compute_chunk", "featurize_dataset"]
