"""Memory for the kernels' large outputs, in the two forms their writing needs.

* :func:`recycled_empty` — for outputs a kernel writes whole. Their memory is
  kept when the result is dropped and handed to the next call of about the
  same size: a dataset computed call after call writes into memory that is
  already mapped. A fresh large array costs the system a page fault and a
  cleared page for every page it writes, a large and erratic part of a call
  with gradients (docs/benchmarks.md has the figures).
* :func:`untouched_zeros` — for zeroed outputs of which a kernel writes a small
  part: pages nobody writes take no memory.

Kept memory is marked free for the system (``MADV_FREE``, Linux): under
memory pressure the system takes it back without swapping, and it counts as
resident only until then. :func:`release_memory` unmaps it at once.
"""

from __future__ import annotations

import collections
import math
import mmap
import os
import threading

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
#: Most mappings kept: the arrays of one or two results.
MAX_KEPT = 4

#: Arrays from this size on get a mapping of their own in :func:`untouched_zeros`.
OWN_MAPPING_BYTES = 1 << 20

_MAPPINGS = hasattr(mmap, "MAP_PRIVATE")  # POSIX; elsewhere plain numpy arrays
_kept: list[tuple[int, mmap.mmap, np.ndarray]] = []  # (size, mapping, its bytes), oldest first
_returned: collections.deque = collections.deque()  # dropped by results, not yet kept
_lock = threading.Lock()


class _Region:
    """The first ``n_bytes`` of a mapping, as the base of the arrays made from it:
    when the last of them goes, the mapping is returned for reuse."""

    def __init__(self, mapping: mmap.mmap, data: np.ndarray, n_bytes: int):
        self.mapping, self.data = mapping, data
        self.__array_interface__ = {"data": (data.ctypes.data, False),
                                    "shape": (n_bytes // 8,), "typestr": "<f8", "version": 3}

    def __del__(self) -> None:
        # May run in any thread, also inside the lock (the garbage collector
        # runs where it likes): queue the mapping, keep it only if the lock is free.
        try:
            _returned.append((len(self.mapping), self.mapping, self.data))
            if _lock.acquire(blocking=False):
                try:
                    _keep_returned()
                finally:
                    _lock.release()
        except (AttributeError, TypeError):  # interpreter shutdown: the module is gone
            pass


def recycled_empty(shape: tuple[int, ...]) -> np.ndarray:
    """A C-ordered float64 array of undefined values (as ``np.empty``), for a kernel
    that writes every element: large ones reuse the memory of dropped results."""
    n_bytes = 8 * math.prod(shape)
    if n_bytes < RECYCLE_BYTES or not _MAPPINGS:
        return np.empty(shape)
    with _lock:
        _keep_returned()
        found = _take(n_bytes)
    if found is None:
        size = mmap.PAGESIZE * math.ceil(n_bytes * HEADROOM / mmap.PAGESIZE)
        try:
            mapping = _new_mapping(size, shape, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        except MemoryError:
            if not release_memory():
                raise
            mapping = _new_mapping(size, shape, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):  # as numpy asks for its large arrays
            mapping.madvise(mmap.MADV_HUGEPAGE)
        found = mapping, np.frombuffer(mapping, dtype=np.uint8)
    return np.asarray(_Region(*found, n_bytes)).reshape(shape)


def release_memory() -> int:
    """Unmap the memory kept from dropped results for reuse; returns its size in bytes.

    Arrays still in use keep theirs. Needed only to give memory back to the
    system before it asks for it (kept memory is marked free for it anyway).
    """
    with _lock:
        _keep_returned()
        released = sum(size for size, _, _ in _kept)
        _kept.clear()
    return released


def kept_bytes() -> int:
    """Size of the mappings kept for reuse."""
    with _lock:
        _keep_returned()
        return sum(size for size, _, _ in _kept)


def _keep_returned() -> None:
    """Move returned mappings to the kept ones, the oldest unmapped beyond the limits
    (``_lock`` held)."""
    while _returned:
        size, mapping, data = _returned.popleft()
        if hasattr(mmap, "MADV_FREE"):
            mapping.madvise(mmap.MADV_FREE)
        _kept.append((size, mapping, data))
    limit = _memory_limit()
    while len(_kept) > MAX_KEPT or sum(size for size, _, _ in _kept) > limit:
        del _kept[0]  # its last references: unmapped here


def _take(n_bytes: int) -> tuple[mmap.mmap, np.ndarray] | None:
    """The smallest kept mapping that fits ``n_bytes`` with little waste, removed
    from the kept ones (``_lock`` held)."""
    fits = [i for i, (size, _, _) in enumerate(_kept)
            if n_bytes <= size <= RECYCLE_SLACK * HEADROOM * n_bytes]
    if not fits:
        return None
    best = min(fits, key=lambda i: (_kept[i][0], -i))  # smallest, then newest
    _, mapping, data = _kept.pop(best)
    return mapping, data


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
    # mappings are its own copies, but not worth keeping
    global _lock
    _lock = threading.Lock()
    _kept.clear()
    _returned.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def untouched_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A C-ordered float64 array of zeros of which only the written pages take memory.

    ``np.zeros`` gets fresh zero pages for large arrays too, but numpy asks the
    system for transparent huge pages on them, so a single write makes a whole
    2 MiB resident: an output whose rows are mostly zeros, with a few written
    blocks in each, becomes resident entirely. Here large arrays are an
    anonymous mapping of their own with huge pages declined (where the system
    has them), so a page nobody writes stays the shared zero page, also when read.
    """
    n_bytes = 8 * math.prod(shape)
    if n_bytes < OWN_MAPPING_BYTES:
        return np.zeros(shape)
    # not mmap's default MAP_SHARED: reads would take memory (Windows has only that)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS if _MAPPINGS else None
    mapping = _new_mapping(n_bytes, shape, flags)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        mapping.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(mapping, dtype=np.float64).reshape(shape)


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
