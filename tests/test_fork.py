"""A process forked after atomdesc ran its threads (a ``multiprocessing`` worker
started with ``fork``) must compute the same results, not hang: libgomp's
OpenMP threads and the pipeline's thread pools do not survive ``fork``."""

from __future__ import annotations

import json
import os
import signal
import time
import warnings

import numpy as np
import pytest
from ase.build import bulk

import atomdesc
from atomdesc import examples

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a process with threads may deadlock: that is the point
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]


def child_exit_code(run, timeout=120.0) -> int:
    """Run ``run()`` in a forked child; its exit code (0 when it returned True)."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 3
        try:
            code = 0 if run() else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.05)


def test_forked_child_computes_and_featurizes_after_the_parent_did(tmp_path):
    d = atomdesc.descriptor_from_hypers(json.loads(examples.ACSF_N2P2.read_text()))
    si = bulk("Si", cubic=True) * (2, 2, 2)
    expected = d.compute(si, gradients=True, n_threads=2)  # OpenMP threads started here
    atomdesc.featurize_dataset(examples.STRUCTURES, d, tmp_path / "parent.zarr",
                               gradients=True, progress=False)  # and the writer pools

    def in_child() -> bool:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = d.compute(si, gradients=True)  # default threads: one, with a warning
            atomdesc.featurize_dataset(examples.STRUCTURES, d, tmp_path / "child.zarr",
                                       gradients=True, progress=False)
        return (np.array_equal(result.features, expected.features)
                and np.array_equal(result.gradient_values, expected.gradient_values)
                and any("forked" in str(w.message) for w in caught))

    assert child_exit_code(in_child) == 0
    parent = atomdesc.open_features(tmp_path / "parent.zarr")
    child = atomdesc.open_features(tmp_path / "child.zarr")
    np.testing.assert_array_equal(child.features[:], parent.features[:])
    np.testing.assert_array_equal(child[201].gradient_values, parent[201].gradient_values)


def test_a_forked_child_does_not_wait_for_the_output_memory_lock():
    """Forked while another thread holds the lock of the recycled output memory,
    the child still allocates (it starts with a lock of its own)."""
    from atomdesc import output_memory

    def allocate() -> bool:
        output_memory.recycled_empty((2048, 2048))[...] = 1.0  # 32 MiB: recycled
        return True

    output_memory.recycled_empty((2048, 2048))  # a mapping kept by the parent
    with output_memory._lock:
        assert child_exit_code(allocate, timeout=60.0) == 0
