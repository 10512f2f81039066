"""The compiled extension: installed, OpenMP-enabled, honouring OMP_NUM_THREADS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atomdesc import kernels

# every kernel build of this installation (baseline, and v3 on x86-64)
VARIANTS = kernels.available()


@pytest.mark.parametrize("variant", VARIANTS)
def test_extension_is_compiled_not_source(variant):
    assert Path(kernels.load(variant).__file__).suffix in (".so", ".pyd")


@pytest.mark.parametrize("variant", VARIANTS)
def test_kernels_release_the_gil(variant):
    # f2py's "threadsafe" wraps each Fortran call in Py_BEGIN/END_ALLOW_THREADS,
    # which call PyEval_SaveThread/RestoreThread: without it the extension
    # would not reference them at all.
    binary = Path(kernels.load(variant).__file__).read_bytes()
    assert b"PyEval_SaveThread" in binary and b"PyEval_RestoreThread" in binary


def test_omp_num_threads_is_honoured():
    code = "import atomdesc; print(atomdesc.max_threads())"
    for n in ("1", "2", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=n)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=120).stdout
        assert out.strip() == n
