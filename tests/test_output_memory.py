"""Output memory: recycled for outputs written whole, untouched zero pages for sparse ones."""

from __future__ import annotations

import gc
import os
import sys
import threading

import numpy as np
import pytest
from ase.build import bulk

import atomdesc
from atomdesc import output_memory
from atomdesc.output_memory import recycled_empty, release_memory, untouched_zeros

posix = pytest.mark.skipif(not hasattr(os, "fork"), reason="recycling needs POSIX mappings")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="reads the resident size from /proc")

LARGE = (2048, 2048)  # 32 MiB: recycled
MIB = 2**20


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


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
    assert len(output_memory._kept) == output_memory.MAX_KEPT


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


@pytest.mark.parametrize("allocate", [recycled_empty, untouched_zeros])
def test_too_large_an_output_is_a_memory_error(allocate):
    with pytest.raises(MemoryError, match="cannot allocate .* GiB for a descriptor output"):
        allocate((2**47,))  # 1 PiB


def test_untouched_zeros_are_zeros():
    z = untouched_zeros((3, 4))
    assert z.shape == (3, 4) and not z.any()
    big = untouched_zeros((256, 1024))
    assert big.shape == (256, 1024) and big.flags.writeable and not big.any()
