"""Output memory: recycled for outputs written whole, untouched zero pages for sparse ones
(recycled too, with the pages a dropped result wrote cleared)."""

from __future__ import annotations

import gc
import mmap
import os
import select
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from ase.build import bulk, molecule

import atomdesc
from atomdesc import kernel_inputs, output_memory
from atomdesc.output_memory import (DirtyPages, recycled_empty, release_memory,
                                    untouched_zero_rows, untouched_zeros)

posix = pytest.mark.skipif(not hasattr(os, "fork"), reason="recycling needs POSIX mappings")
resident_pages_known = pytest.mark.skipif(
    output_memory._mincore is None, reason="zeroed outputs are recycled where mincore tells "
    "the pages a mapping holds")
needs_marker = pytest.mark.skipif(
    not (hasattr(mmap, "MADV_FREE") and hasattr(select, "poll")),
    reason="kept memory is marked free (MADV_FREE) by a thread that polls a pipe")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="reads the resident size from /proc")

LARGE = (2048, 2048)  # 32 MiB: recycled
MIB = 2**20


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def _kept_now() -> list:
    """The kept mappings, the dropped ones included (read as the marking thread does)."""
    with output_memory._lock:
        output_memory._keep_returned()
        return list(output_memory._kept)


@pytest.fixture(autouse=True)
def nothing_kept():
    release_memory()
    yield
    gc.collect()
    release_memory()


def test_small_arrays_are_plain_numpy():
    a = recycled_empty((10, 10))
    assert a.shape == (10, 10) and a.dtype == np.float64 and a.flags.owndata


@posix
def test_dropped_memory_is_reused_for_the_next_array():
    a = recycled_empty(LARGE)
    assert a.shape == LARGE and a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable
    a[...] = 1.0
    where = _address(a)
    assert output_memory.kept_bytes() == 0
    del a
    assert output_memory.kept_bytes() >= 8 * MIB
    b = recycled_empty(LARGE)
    assert _address(b) == where
    assert output_memory.kept_bytes() == 0


@posix
def test_memory_is_not_reused_while_any_view_of_it_lives():
    a = recycled_empty(LARGE)
    view = a.T[3:7]  # what results hand out: transposed, sliced views
    del a
    b = recycled_empty(LARGE)
    assert not np.shares_memory(view, b)
    view[...] = 2.0
    b[...] = 3.0
    assert (view == 2.0).all()
    del view
    c = recycled_empty(LARGE)  # now the first one's memory is free again
    assert not np.shares_memory(b, c)


@posix
def test_reuse_only_for_a_similar_size():
    double = (2 * LARGE[0], LARGE[1])
    a = recycled_empty(double)
    where = _address(a)
    del a
    half = recycled_empty(LARGE)  # half the size: a new mapping
    assert _address(half) != where
    del half
    # the first one is kept while the half-size one is made and dropped
    slightly_larger = recycled_empty((double[0] + 128, double[1]))  # within the headroom
    assert _address(slightly_larger) == where


@posix
def test_at_most_max_kept_mappings_are_kept():
    arrays = [recycled_empty((LARGE[0], LARGE[1] + 64 * i))
              for i in range(output_memory.MAX_KEPT + 3)]
    del arrays
    assert len(_kept_now()) == output_memory.MAX_KEPT


@posix
def test_a_mapping_dropped_while_the_lock_is_held_is_kept_afterwards():
    # the garbage collector can drop a result at any point, also inside the lock
    a = recycled_empty(LARGE)
    where = _address(a)
    with output_memory._lock:
        del a
        assert len(output_memory._returned) == 1
    assert _address(recycled_empty(LARGE)) == where


@posix
def test_threads_never_share_memory():
    errors = []

    def work(value: float) -> None:
        for _ in range(20):
            a = recycled_empty(LARGE)
            a[...] = value
            if not (a == value).all():  # another thread wrote into it
                errors.append(value)

    threads = [threading.Thread(target=work, args=(float(i),)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.fixture
def marked_free(monkeypatch):
    """The kept mappings as they are marked free for the system, with FREE_AFTER 0.5 s."""
    marked = []
    mark = output_memory._mark_free

    def recording(i: int) -> None:
        marked.append(output_memory._kept[i].mapping)
        mark(i)

    monkeypatch.setattr(output_memory, "FREE_AFTER", 0.5)
    monkeypatch.setattr(output_memory, "_mark_free", recording)
    return marked


def _wait_until(condition, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@needs_marker
def test_kept_memory_is_marked_free_once_it_has_waited(marked_free):
    a = recycled_empty(LARGE)
    del a
    assert marked_free == []  # not at once: the next call may want it back
    assert _wait_until(lambda: [kept.marked_free for kept in _kept_now()] == [True])
    time.sleep(0.3)
    assert len(marked_free) == 1  # once


@needs_marker
def test_memory_taken_back_in_time_is_never_marked_free(marked_free, monkeypatch):
    monkeypatch.setattr(output_memory, "FREE_AFTER", 1.0)
    for _ in range(5):  # a dataset computed call after call
        a = recycled_empty(LARGE)
        a[...] = 1.0
        del a
        time.sleep(0.02)
    a = recycled_empty(LARGE)  # in use from here on
    time.sleep(1.3)
    assert marked_free == []
    del a


@needs_marker
def test_memory_dropped_while_the_lock_is_held_is_marked_free_later(marked_free):
    a = recycled_empty(LARGE)
    with output_memory._lock:  # as the garbage collector may drop a result anywhere
        del a
        assert len(output_memory._returned) == 1
    assert _wait_until(lambda: len(marked_free) == 1)


@needs_marker
def test_a_forked_child_marks_its_own_kept_memory(marked_free):
    a = recycled_empty(LARGE)
    del a  # the parent's mapping waits to be marked
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            marked_free.clear()  # the parent's, copied
            if output_memory._marker is None and output_memory._kept == []:
                b = recycled_empty(LARGE)
                del b
                code = 0 if _wait_until(lambda: len(marked_free) == 1) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _wait_until(lambda: len(marked_free) == 1)


@posix
def test_the_interpreter_exits_with_recycled_arrays_alive():
    # their memory is returned by finalizers while the interpreter shuts down, where
    # nothing may wait for a thread; after a pause, as a script that waits before it ends
    code = ("import time\n"
            "from atomdesc.output_memory import recycled_empty, untouched_zeros\n"
            "kept = recycled_empty((2048, 2048))\n"
            "zeros = untouched_zeros((2048, 2048))\n"
            "zeros[0, 0] = 1.0\n"
            "dropped = recycled_empty((2048, 2048))\n"
            "del dropped\n"
            "time.sleep(1.5)\n")
    subprocess.run([sys.executable, "-c", code], timeout=60, check=True)


@posix
@linux
def test_release_memory_gives_the_pages_back(resident_mib):
    a = recycled_empty((64, 2**17))  # 64 MiB
    a[...] = 1.0
    before = resident_mib()  # measured while in use: the system may take kept memory back early
    del a
    assert output_memory.kept_bytes() >= 64 * MIB
    assert release_memory() >= 64 * MIB
    assert before - resident_mib() > 48
    assert output_memory.kept_bytes() == 0


@posix
def test_soap_gradients_in_recycled_memory_are_those_of_a_fresh_call():
    """A result written into the memory of an earlier, different one has only its own values."""
    d = atomdesc.descriptor("soap", species=["Si"], r_cut=5.0, n_max=8, l_max=6, sigma=0.3)

    def cell(seed):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (3, 3, 3)
        atoms.rattle(0.05, seed=seed)
        return atoms

    reference = d.compute(cell(2), gradients=True, n_threads=1)
    assert reference.gradient_values.nbytes > output_memory.RECYCLE_BYTES
    expected = (reference.features.copy(), reference.gradient_pairs.copy(),
                reference.gradient_values.copy())
    del reference
    first = d.compute(cell(1), gradients=True, n_threads=1)
    where = _address(first.gradient_values)
    assert not np.array_equal(first.features, expected[0])
    del first  # its memory, holding cell 1's gradients, is the one kept
    again = d.compute(cell(2), gradients=True, n_threads=1)
    assert _address(again.gradient_values) == where
    np.testing.assert_array_equal(again.features, expected[0])
    np.testing.assert_array_equal(again.gradient_pairs, expected[1])
    np.testing.assert_array_equal(again.gradient_values, expected[2])


@resident_pages_known
@pytest.mark.parametrize("family, n_max, l_max, n_molecules, n_threads", [
    ("soap", 8, 6, 8, 1), ("soap", 8, 6, 8, 2),
    # 300 features in runs of 6 and 9: a page of strain rows spans several components, and
    # runs start and end at odd words (the kernel writes such pages 16 bytes at a time)
    ("soap", 3, 0, 400, 2),
    ("spherical_expansion", 8, 6, 32, 1), ("bispectrum", 3, 3, 8, 2)])
def test_soap_on_few_species_in_recycled_zeros_is_a_fresh_call(family, n_max, l_max, n_molecules,
                                                                n_threads, monkeypatch):
    """Molecules with few of many species write only their channels into zeroed outputs:
    in the memory of an earlier, different result they have only their own values. The
    strain rows' recycled pages are cleared (or written whole) by the kernel, centre by
    centre. The molecules make strain rows of 32 MiB or more, so that they are recycled."""
    species = ["H", "B", "C", "N", "O", "F", "Si", "S"]
    d = atomdesc.descriptor(family, species=species, r_cut=5.0, sigma=0.3, n_max=n_max,
                            l_max=l_max)
    methanes = [molecule("CH4") for _ in range(n_molecules)]
    others = [molecule("CH4") for _ in range(n_molecules)]  # the same sizes, other species
    for k, atoms in enumerate(others):
        atoms.symbols = ["SiH4", "CF4", "NH4", "BO4", "SF4", "OH4", "SiN4", "FH4"][k % 8]
    for k, atoms in enumerate(methanes + others):
        atoms.rattle(0.05, seed=k)
    left_to_kernel = []
    make_rows = output_memory.untouched_zero_rows

    def spy(*args):
        strain, dirty = make_rows(*args)
        left_to_kernel.append(len(dirty.offsets))
        return strain, dirty

    monkeypatch.setattr(kernel_inputs, "untouched_zero_rows", spy)

    def call(structures):
        return d.compute(structures, gradients=True, strain_gradients=True, n_threads=n_threads)

    reference = call(methanes)
    assert reference[0].strain_gradients.base.nbytes > output_memory.RECYCLE_BYTES
    expected = [(r.features.copy(), r.gradient_values.copy(), r.strain_gradients.copy())
                for r in reference]
    del reference
    first = call(others)  # written into the methanes' memory, and its pages kept
    where = _address(first[0].strain_gradients.base)
    assert not np.array_equal(first[0].features, expected[0][0])
    del first
    again = call(methanes)
    assert _address(again[0].strain_gradients.base) == where
    assert left_to_kernel[0] == 0 and left_to_kernel[1] > 0 and left_to_kernel[2] > 0
    for result, (features, gradients, strain) in zip(again, expected):
        np.testing.assert_array_equal(result.features, features)
        np.testing.assert_array_equal(result.gradient_values, gradients)
        np.testing.assert_array_equal(result.strain_gradients, strain)


@posix
def test_kept_memory_is_given_back_when_the_system_refuses_a_new_mapping(monkeypatch):
    a = recycled_empty(LARGE)
    del a
    assert output_memory.kept_bytes() > 0
    make = output_memory._new_mapping
    calls = []

    def refuse_first(*args):
        calls.append(output_memory.kept_bytes())
        if len(calls) == 1:
            raise MemoryError("refused")
        return make(*args)

    monkeypatch.setattr(output_memory, "_new_mapping", refuse_first)
    b = recycled_empty((4 * LARGE[0], LARGE[1]))  # too large for the kept one
    assert b.shape == (4 * LARGE[0], LARGE[1])
    assert calls[0] > 0 and calls[1] == 0  # retried once, after giving back what was kept


@resident_pages_known
def test_dropped_zeros_are_reused_with_the_written_pages_cleared():
    a = untouched_zeros(LARGE)
    assert a.flags.c_contiguous and a.flags.writeable
    pattern = np.zeros(LARGE)
    for array in (a, pattern):
        array[::97, ::300] = 1.0  # a page in every few
        array[-1, -1] = 2.0
    page = mmap.PAGESIZE
    written = np.count_nonzero(pattern.reshape(-1, page // 8).any(axis=1))
    where = _address(a)
    del a
    # what it holds is the written pages, not its size
    assert output_memory.kept_bytes() == written * page
    b = untouched_zeros(LARGE)
    assert _address(b) == where and b.shape == LARGE and not b.any()
    assert output_memory.kept_bytes() == 0


@resident_pages_known
def test_zero_rows_leave_the_pages_inside_a_row_to_the_kernel():
    page_words = mmap.PAGESIZE // 8
    shape = (2600, 3 * page_words + 100)  # rows of 3.2 pages: most pages inside one, some shared
    assert 8 * shape[0] * shape[1] > output_memory.RECYCLE_BYTES
    a, dirty = untouched_zero_rows(shape)
    assert len(dirty.offsets) == 0 and not dirty.start.any()  # fresh: nothing to clear
    a[...] = 1.0
    where = _address(a)
    del a
    b, dirty = untouched_zero_rows(shape)
    assert _address(b) == where and dirty.words == page_words
    dirty.check(shape[0], shape[1])
    listed = np.zeros(shape, dtype=bool)
    for row in range(shape[0]):
        for offset in dirty.offsets[dirty.start[row]:dirty.start[row + 1]]:
            assert (row * shape[1] + offset) % page_words == 0  # a whole page, inside the row
            listed[row, offset:offset + page_words] = True
    assert ((b == 1.0) == listed).all()  # the listed pages only are left as they were
    assert 0.5 < listed.mean() < 1.0
    b[listed] = 0.0  # what the kernel does before writing the row


def test_pages_to_clear_outside_their_rows_are_refused():
    none = DirtyPages.none(3)
    none.check(3, 10)
    page = none.words
    for offsets, start in [([0], [0, 1, 1]), ([-8], [0, 1, 1, 1]), ([page], [0, 0, 0, 1]),
                           ([0, page], [0, 2, 1, 2])]:
        bad = DirtyPages(np.array(offsets, dtype=np.int64), np.array(start, dtype=np.int64),
                         page)
        with pytest.raises(RuntimeError, match="outside their rows"):
            bad.check(3, 2 * page - 1)


@resident_pages_known
def test_zeros_with_rows_of_another_shape_get_a_mapping_of_their_own():
    """A kernel writes the pages its rows' layout puts its values in: a mapping that held
    rows of another shape would have the wrong pages written. Two layouts in turn (two
    descriptors) each get their own back."""
    tall, wide = (2048, 2048), (1024, 4096)  # the same size
    a = untouched_zeros(tall)
    a[::64] = 1.0
    where_tall = _address(a)
    del a
    b = untouched_zeros(wide)
    assert _address(b) != where_tall and not b.any()
    b[::64] = 1.0
    where_wide = _address(b)
    del b
    for _ in range(2):
        a = untouched_zeros(tall)
        assert _address(a) == where_tall and not a.any()
        a[::64] = 1.0
        del a
        b = untouched_zeros(wide)
        assert _address(b) == where_wide and not b.any()
        b[::64] = 1.0
        del b


@resident_pages_known
@linux
def test_pages_only_read_are_not_made_memory_by_the_next_array(resident_mib):
    a = untouched_zeros((64, 2**17))  # 64 MiB
    a[:, ::2**16] = 1.0  # two pages per MiB written...
    assert a.sum() == 128.0  # ...every other read: it maps the shared zero page
    del a
    before = resident_mib()
    b = untouched_zeros((64, 2**17))
    assert not b.any() and resident_mib() - before < 4.0


@resident_pages_known
def test_pages_beyond_a_smaller_array_are_cleared_for_a_larger_one_later():
    larger = (2 * LARGE[0], LARGE[1])
    a = untouched_zeros(larger)
    a[...] = 1.0
    where = _address(a)
    del a
    smaller = (2 * LARGE[0] - 100, LARGE[1])  # the same mapping; its last pages stay as they were
    b = untouched_zeros(smaller)
    assert _address(b) == where and not b.any()
    del b
    c = untouched_zeros(larger)
    assert _address(c) == where and not c.any()


@resident_pages_known
def test_zeroed_and_undefined_outputs_do_not_share_kept_memory():
    a = recycled_empty(LARGE)
    a[...] = 1.0
    where = _address(a)
    del a
    z = untouched_zeros(LARGE)
    assert _address(z) != where and not z.any()
    z[0, 0] = 1.0
    where_zeros = _address(z)
    del z
    e = recycled_empty(LARGE)
    assert _address(e) == where
    assert _address(untouched_zeros(LARGE)) == where_zeros


def test_zeros_are_not_recycled_where_pages_held_are_unknown(monkeypatch):
    monkeypatch.setattr(output_memory, "_mincore", None)
    a = untouched_zeros(LARGE)
    a[...] = 1.0
    del a
    assert output_memory.kept_bytes() == 0
    assert not untouched_zeros(LARGE).any()


def test_clearing_pages_outside_the_mapping_is_refused():
    data = np.ones(4 * 4096, dtype=np.uint8)
    with pytest.raises(RuntimeError, match="outside their mapping"):
        output_memory._clear_pages(data, np.array([4]))
    with pytest.raises(RuntimeError, match="outside their mapping"):
        output_memory._clear_pages(data, np.array([2, 1]))
    output_memory._clear_pages(data, np.array([1, 3]))
    assert data.reshape(4, 4096).any(axis=1).tolist() == [True, False, True, False]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_pages_are_cleared_by_any_number_of_threads(n_threads):
    data = np.ones(3000 * 4096, dtype=np.uint8)  # more pages than one thread takes alone
    output_memory._clear_pages(data, np.arange(1, 3000, 2), n_threads)
    assert (data.reshape(3000, 4096).any(axis=1) == (np.arange(3000) % 2 == 0)).all()


@pytest.mark.parametrize("allocate", [recycled_empty, untouched_zeros])
def test_too_large_an_output_is_a_memory_error(allocate):
    with pytest.raises(MemoryError, match="cannot allocate .* GiB for a descriptor output"):
        allocate((2**47,))  # 1 PiB


def test_untouched_zeros_are_zeros():
    z = untouched_zeros((3, 4))
    assert z.shape == (3, 4) and not z.any()
    big = untouched_zeros((256, 1024))
    assert big.shape == (256, 1024) and big.flags.writeable and not big.any()
