"""Memory for the kernels' large outputs, in the two forms their writing needs.

* :func:`recycled_empty` — for outputs a kernel writes whole. Their memory is
  kept when the result is dropped and handed to the next call of about the
  same size: a dataset computed call after call writes into memory that is
  already mapped. A fresh large array costs the system a page fault and a
  cleared page for every page it writes, a large and erratic part of a call
  with gradients (docs/benchmarks.md has the figures).
* :func:`untouched_zeros` — for zeroed outputs of which a kernel writes a small
  part: pages nobody writes take no memory. Large ones are recycled too: the
  pages a dropped result wrote (among those the system maps, asked with
  ``mincore``, Linux) are cleared for the next, the others are still the
  system's zero pages.

Kept memory not taken again within :data:`FREE_AFTER` seconds is marked free for
the system (``MADV_FREE``, Linux): under memory pressure the system takes it back
without swapping, and it counts as resident only until then. A daemon thread does
the marking, started by the first recycled array and woken through a pipe when a
result is dropped (finalizers may neither start threads nor wait for locks).
:func:`release_memory` unmaps kept memory at once.
"""

from __future__ import annotations

import collections
import ctypes
import math
import mmap
import os
import select
import sys
import threading
import time
from typing import NamedTuple

import numpy as np

#: Arrays from this size on are recycled. Below it glibc's malloc does it already:
#: once a block of some size up to 32 MiB has been freed, it keeps blocks of that
#: size in its heap for reuse (its dynamic mmap threshold). Recycling smaller
#: arrays here would keep that threshold low, so that other code's buffers of a
#: few MB (a compressor's, say) would get fresh pages on every call instead.
RECYCLE_BYTES = 32 << 20
#: A new mapping is made this much larger than its request, for a later, slightly
#: larger one (the headroom is address space until a request uses it)...
HEADROOM = 1.125
#: ...and a kept mapping serves requests down to 1 / (RECYCLE_SLACK * HEADROOM) of its
#: size: at most RECYCLE_SLACK times the memory asked for is held beyond the headroom.
RECYCLE_SLACK = 1.25
#: Most mappings kept: the arrays of one or two results (three each with strain).
MAX_KEPT = 6
#: Seconds a kept mapping waits for reuse before it is marked free for the system. Not
#: at once: the first write to a page after ``MADV_FREE`` costs about as much again as
#: the write (on this project's virtual machines, 55 830 pages of 4 KiB: 10 ms to write,
#: 21 ms once marked free), and a dataset computed call after call takes its memory
#: back within milliseconds.
FREE_AFTER = 1.0

#: Arrays from this size on get a mapping of their own in :func:`untouched_zeros`.
OWN_MAPPING_BYTES = 1 << 20

_MAPPINGS = hasattr(mmap, "MAP_PRIVATE")  # POSIX; elsewhere plain numpy arrays
_PAGE = mmap.PAGESIZE


class _Kept(NamedTuple):
    """A mapping kept for reuse."""

    mapping: mmap.mmap
    data: np.ndarray  # its bytes
    #: for :func:`untouched_zeros`: the pages the system maps, the only ones that
    #: may hold non-zeros (indices, ascending); None for :func:`recycled_empty`
    mapped: np.ndarray | None
    #: for :func:`untouched_zeros`: the shape of a row of the array it last held (all
    #: axes but the first), which decides which pages a kernel writes
    row_shape: tuple[int, ...] | None
    kept_at: float  # time.monotonic() when it was kept
    marked_free: bool = False

    @property
    def held(self) -> int:
        """Memory it holds, in bytes (at most: a page only read maps the shared zero page)."""
        return len(self.mapping) if self.mapped is None else _PAGE * len(self.mapped)


_kept: list[_Kept] = []  # oldest first
_returned: collections.deque = collections.deque()  # (mapping, bytes, row shape), not yet kept
_lock = threading.Lock()
_marker: _Marker | None = None  # the thread marking idle kept memory free, once started


class _Region:
    """The first ``n_bytes`` of a mapping, as the base of the arrays made from it:
    when the last of them goes, the mapping is returned for reuse (with the shape of
    a row of the array: by :func:`untouched_zeros`)."""

    def __init__(self, mapping: mmap.mmap, data: np.ndarray, n_bytes: int,
                 row_shape: tuple[int, ...] | None):
        self.mapping, self.data, self.row_shape = mapping, data, row_shape
        self.__array_interface__ = {"data": (data.ctypes.data, False),
                                    "shape": (n_bytes // 8,), "typestr": "<f8", "version": 3}

    def __del__(self) -> None:
        # May run in any thread, also inside the lock (the garbage collector
        # runs where it likes): queue the mapping, keep it only if the lock is free.
        try:
            _returned.append((self.mapping, self.data, self.row_shape))
            if _lock.acquire(blocking=False):
                try:
                    _keep_returned()
                finally:
                    _lock.release()
            if _marker is not None:
                _marker.wake()
        except (AttributeError, TypeError, ImportError):  # interpreter shutdown: modules gone
            pass


def recycled_empty(shape: tuple[int, ...]) -> np.ndarray:
    """A C-ordered float64 array of undefined values (as ``np.empty``), for a kernel
    that writes every element: large ones reuse the memory of dropped results."""
    n_bytes = 8 * math.prod(shape)
    if n_bytes < RECYCLE_BYTES or not _MAPPINGS:
        return np.empty(shape)
    _start_marker()
    with _lock:
        _keep_returned()
        found = _take(n_bytes)
    if found is None:
        mapping = _recyclable_mapping(n_bytes, shape, huge_pages=True)  # as numpy's large arrays
    else:
        mapping = found.mapping
    return np.asarray(_Region(mapping, np.frombuffer(mapping, dtype=np.uint8), n_bytes,
                              row_shape=None)).reshape(shape)


def _recyclable_mapping(n_bytes: int, shape: tuple[int, ...], huge_pages: bool) -> mmap.mmap:
    """A new mapping for ``n_bytes`` and some headroom; kept memory is given back to
    the system first if it refuses."""
    size = _PAGE * math.ceil(n_bytes * HEADROOM / _PAGE)
    try:
        mapping = _new_mapping(size, shape, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except MemoryError:
        if not release_memory():
            raise
        mapping = _new_mapping(size, shape, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _advise_huge_pages(mapping, huge_pages)
    return mapping


def _advise_huge_pages(mapping: mmap.mmap, huge_pages: bool) -> None:
    advice = "MADV_HUGEPAGE" if huge_pages else "MADV_NOHUGEPAGE"
    if hasattr(mmap, advice):
        mapping.madvise(getattr(mmap, advice))


def release_memory() -> int:
    """Unmap the memory kept from dropped results for reuse; returns its size in bytes.

    Arrays still in use keep theirs. Needed only to give memory back to the
    system before it asks for it (kept memory is marked free for it anyway once it
    has waited :data:`FREE_AFTER` seconds).
    """
    with _lock:
        _keep_returned()
        released = sum(kept.held for kept in _kept)
        _kept.clear()
    return released


def kept_bytes() -> int:
    """Memory the mappings kept for reuse hold (of a zeroed output's: its mapped pages)."""
    with _lock:
        _keep_returned()
        return sum(kept.held for kept in _kept)


def _keep_returned() -> None:
    """Move returned mappings to the kept ones, the oldest unmapped beyond the limits
    (``_lock`` held)."""
    while _returned:
        mapping, data, row_shape = _returned.popleft()
        zeroed = row_shape is not None
        mapped = _mapped_pages(data) if zeroed else None
        if zeroed and mapped is None:
            continue  # what it holds is unknown: not reusable as zeros
        _kept.append(_Kept(mapping, data, mapped, row_shape, kept_at=time.monotonic()))
        if _marker is None:  # no thread running to mark it later: at once
            _mark_free(len(_kept) - 1)
    limit = _memory_limit()
    while len(_kept) > MAX_KEPT or sum(kept.held for kept in _kept) > limit:
        del _kept[0]  # its last references: unmapped here


def _mark_free(i: int) -> None:
    """Mark kept mapping i free for the system (``_lock`` held)."""
    kept = _kept[i]
    if hasattr(mmap, "MADV_FREE"):
        kept.mapping.madvise(mmap.MADV_FREE)
    _kept[i] = kept._replace(marked_free=True)


def _mark_idle_free() -> float | None:
    """Mark the kept mappings that have waited :data:`FREE_AFTER` seconds free; the
    time (``time.monotonic``) when the next one will have, None if none is left
    (``_lock`` held)."""
    _keep_returned()
    now, due = time.monotonic(), None
    for i, kept in enumerate(_kept):
        if not kept.marked_free:
            if now - kept.kept_at >= FREE_AFTER:
                _mark_free(i)
            elif due is None or kept.kept_at + FREE_AFTER < due:
                due = kept.kept_at + FREE_AFTER
    return due


class _Marker:
    """The daemon thread that marks idle kept memory free: it sleeps until the next
    kept mapping is due, or until :meth:`wake` (a byte down a pipe, which a finalizer
    may send: no lock, no waiting) says that a result was dropped."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self.thread = threading.Thread(target=self._run, name="atomdesc-output-memory",
                                       daemon=True)

    def wake(self) -> None:
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups already
            pass

    def _run(self) -> None:
        global _marker
        try:
            poll = select.poll()  # not select.select: any file descriptor number
            poll.register(self._read, select.POLLIN)
            due = None
            while True:
                wait = None if due is None else max(0, math.ceil(1e3 * (due - time.monotonic())))
                if poll.poll(wait):  # milliseconds, None: until woken
                    try:
                        while os.read(self._read, 4096):
                            pass
                    except BlockingIOError:
                        pass
                with _lock:
                    due = _mark_idle_free()
        finally:  # not expected: kept memory is marked free at once from then on
            with _lock:
                if _marker is self:
                    _marker = None

    def close(self) -> None:
        """Close the pipe (a forked child's copy: its thread is the parent's)."""
        os.close(self._read)
        os.close(self._write)


def _start_marker() -> None:
    """Start the marking thread if it is not running and marking is possible. Where
    the system refuses a pipe or a thread, kept memory is marked free at once."""
    global _marker
    if _marker is None and hasattr(mmap, "MADV_FREE") and hasattr(select, "poll"):
        with _lock:
            if _marker is None:
                try:
                    _marker = _Marker()  # first: a result dropped meanwhile wakes it
                    _marker.thread.start()
                except (OSError, RuntimeError):
                    if _marker is not None:
                        _marker.close()
                    _marker = None


def _take(n_bytes: int, row_shape: tuple[int, ...] | None = None) -> _Kept | None:
    """The smallest kept mapping of the kind asked for that fits ``n_bytes`` with
    little waste, removed from the kept ones (``_lock`` held). For zeroed arrays
    (``row_shape`` given) only one that last held rows of that shape: the pages a
    kernel writes follow the rows' layout, and in a mapping that held another one it
    would clear pages it does not write and fault in those it does, more than a new
    mapping costs (two descriptors computed in turn each get their own back)."""
    fits = [i for i, kept in enumerate(_kept)
            if kept.row_shape == row_shape
            and n_bytes <= len(kept.mapping) <= RECYCLE_SLACK * HEADROOM * n_bytes]
    if not fits:
        return None
    best = min(fits, key=lambda i: (len(_kept[i].mapping), -i))  # smallest, then newest
    return _kept.pop(best)


def _memory_limit() -> float:
    """Keep at most a quarter of the machine's memory."""
    return 0.25 * physical_memory()


def physical_memory() -> int:
    """The machine's memory in bytes (16 GiB assumed where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not POSIX
        return 16 << 30


def _forget_after_fork() -> None:
    # a forked child may inherit the lock held by another thread; the kept
    # mappings are its own copies, but not worth keeping; the marking thread is
    # the parent's (the next recycled array starts the child's own)
    global _lock, _marker
    _lock = threading.Lock()
    _kept.clear()
    _returned.clear()
    if _marker is not None:
        _marker.close()
        _marker = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def untouched_zeros(shape: tuple[int, ...], n_threads: int = 1) -> np.ndarray:
    """A C-ordered float64 array of zeros of which only the written pages take memory.

    ``np.zeros`` gets fresh zero pages for large arrays too, but numpy asks the
    system for transparent huge pages on them, so a single write makes a whole
    2 MiB resident: an output whose rows are mostly zeros, with a few written
    blocks in each, becomes resident entirely. Here large arrays are an
    anonymous mapping of their own with huge pages declined (where the system
    has them), so a page nobody writes stays the shared zero page, also when read.
    From :data:`RECYCLE_BYTES` on (where the system tells which pages a mapping
    holds) the mapping is kept when the result is dropped, and the next array
    of about its size gets it with only those pages cleared: clearing a page
    costs a fraction of a fresh page's fault (``n_threads`` clear them).
    """
    return _untouched(shape, n_threads, row_pages=False)[0]


class DirtyPages(NamedTuple):
    """Pages of recycled memory that may hold non-zeros, by row of an array: those of
    row ``r`` start at the word offsets ``offsets[start[r]:start[r + 1]]`` from the
    row's first element (ascending), and are ``words`` long."""

    offsets: np.ndarray  # int64
    start: np.ndarray  # int64, one more than the rows
    words: int

    @classmethod
    def none(cls, n_rows: int) -> DirtyPages:
        """No pages to clear in any of ``n_rows`` rows."""
        return cls(np.zeros(0, dtype=np.int64), np.zeros(n_rows + 1, dtype=np.int64),
                   _PAGE // 8)

    def check(self, n_rows: int, row_words: int) -> None:
        """Refuse (RuntimeError) pages outside rows of ``row_words`` words: a kernel
        clears them."""
        start, offsets = self.start, self.offsets
        ok = (start.dtype == offsets.dtype == np.int64 and len(start) == n_rows + 1
              and start[0] == 0 and start[-1] == len(offsets) and (np.diff(start) >= 0).all())
        if ok and len(offsets):
            ok = 0 < self.words and offsets.min() >= 0 and offsets.max() + self.words <= row_words
        if not ok:
            raise RuntimeError("internal error: pages to clear outside their rows")


def untouched_zero_rows(shape: tuple[int, ...],
                        n_threads: int = 1) -> tuple[np.ndarray, DirtyPages]:
    """:func:`untouched_zeros` for a kernel that clears each row's recycled pages itself.

    The pages that lie inside one row (along the first axis) are not cleared
    here but listed, for the kernel to clear, or to write whole, when it writes
    the row: a page cleared and then written at once goes through the cache
    once, where clearing all pages first and writing later takes each twice, and
    a page written whole need not be read at all. Pages shared by two rows are
    cleared here (two threads may write the rows). Every row's listed pages must
    be cleared (where not zero) or overwritten before the array is read.
    """
    array, dirty = _untouched(shape, n_threads, row_pages=True)
    assert dirty is not None
    return array, dirty


def _untouched(shape: tuple[int, ...], n_threads: int,
               row_pages: bool) -> tuple[np.ndarray, DirtyPages | None]:
    """The array of :func:`untouched_zeros` and, with ``row_pages``, its recycled pages
    inside a row, left to clear."""
    n_bytes = 8 * math.prod(shape)
    n_rows = shape[0] if shape else 1
    dirty = DirtyPages.none(n_rows) if row_pages else None
    if n_bytes < OWN_MAPPING_BYTES:
        return np.zeros(shape), dirty
    if n_bytes < RECYCLE_BYTES or _mincore is None:
        # not mmap's default MAP_SHARED: reads would take memory (Windows has only that)
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS if _MAPPINGS else None
        mapping = _new_mapping(n_bytes, shape, flags)
        _advise_huge_pages(mapping, False)
        return np.frombuffer(mapping, dtype=np.float64).reshape(shape), dirty
    _start_marker()
    with _lock:
        _keep_returned()
        found = _take(n_bytes, row_shape=tuple(shape[1:]))
    if found is None:
        mapping = _recyclable_mapping(n_bytes, shape, huge_pages=False)
    else:
        mapping = found.mapping
        assert found.mapped is not None
        pages = found.mapped[found.mapped < math.ceil(n_bytes / _PAGE)]
        if dirty is not None:  # the pages inside a row are left to the kernel
            words, row_words = _PAGE // 8, n_bytes // 8 // n_rows
            first = pages * words
            row = first // row_words
            inside = first + words <= (row + 1) * row_words
            dirty.start[1:] = np.cumsum(np.bincount(row[inside], minlength=n_rows))
            dirty = dirty._replace(offsets=first[inside] - row[inside] * row_words)
            pages = pages[~inside]
        _clear_pages(found.data, pages, n_threads)
    array = np.asarray(_Region(mapping, np.frombuffer(mapping, dtype=np.uint8), n_bytes,
                               row_shape=tuple(shape[1:]))).reshape(shape)
    return array, dirty


def _clear_pages(data: np.ndarray, pages: np.ndarray, n_threads: int = 1) -> None:
    """Zero the listed pages of ``data`` (a whole mapping's bytes) that are not zero
    already (bit for bit), with ``n_threads`` threads (0: the kernels' default)."""
    from . import kernels  # loading the kernels is left to the first use

    words = data.view(np.int64)
    if len(pages) and not (pages[0] >= 0 and pages[-1] < len(words) // (_PAGE // 8)
                           and (np.diff(pages) > 0).all()):
        raise RuntimeError("internal error: pages to clear outside their mapping")
    if kernels.fortran.clear_pages(words, pages, _PAGE // 8, n_threads) != 0:
        raise RuntimeError("internal error: pages to clear outside their mapping")


def _load_mincore():
    """libc's ``mincore`` where it tells resident pages (Linux), else None."""
    if not (_MAPPINGS and sys.platform.startswith("linux") and hasattr(mmap, "MADV_FREE")):
        return None
    try:
        mincore = ctypes.CDLL(None, use_errno=True).mincore
    except (OSError, AttributeError):
        return None
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    mincore.restype = ctypes.c_int
    return mincore


_mincore = _load_mincore()


def _mapped_pages(data: np.ndarray) -> np.ndarray | None:
    """Indices of the pages of ``data`` (a whole mapping's bytes) that the system
    maps, ascending; None if it does not say.

    A page it does not map reads as zeros: one never touched, or one written
    before the mapping was marked free and taken back since (``MADV_FREE`` also
    frees what was swapped out). Nobody writes a kept mapping, so the pages mapped
    when it is kept are all that can hold non-zeros when it is taken. Pages that
    were only read map the system's shared zero page: they count here too.
    """
    if _mincore is None:
        return None
    flags = np.empty(math.ceil(len(data) / _PAGE), dtype=np.uint8)
    if _mincore(data.ctypes.data, len(data), flags.ctypes.data) != 0:
        return None
    return np.flatnonzero((flags & 1).view(bool))  # numpy's fast path is for booleans


def _new_mapping(n_bytes: int, shape: tuple[int, ...], flags: int | None) -> mmap.mmap:
    """An anonymous mapping; MemoryError (as numpy raises) when the system refuses it."""
    try:
        if flags is None:
            return mmap.mmap(-1, n_bytes)
        return mmap.mmap(-1, n_bytes, flags=flags)
    except OSError as exc:
        raise MemoryError(
            f"cannot allocate {n_bytes / 2**30:.3g} GiB for a descriptor output of shape "
            f"{shape}: {exc.strerror}"
        ) from exc
