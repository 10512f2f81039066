"""The kernels give back what they allocate: repeated calls do not grow the process."""

from __future__ import annotations

import json
import os
import sys

import ase.io
import pytest

import atomdesc
from atomdesc import examples

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the resident size from /proc")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.parametrize("hypers", [
    json.loads(examples.ACSF_N2P2.read_text()),
    {"family": "soap", "species": ["C", "H", "N", "O", "Si"], "r_cut": 4.0, "n_max": 4,
     "l_max": 3},
], ids=["acsf", "soap"])
def test_repeated_calls_do_not_leak(hypers):
    # gfortran 12 left the per-thread work arrays of every call allocated
    # (~14 kB per small molecule with gradients): 6 x 202 calls grew the process by 17 MB (ACSF) and 26 MB (SOAP).
    frames = ase.io.read(examples.STRUCTURES, ":")
    species = sorted({s for a in frames for s in a.get_chemical_symbols()})
    d = atomdesc.descriptor_from_hypers({**hypers, "species": species})
    for _ in range(2):  # warm up: imports, caches, allocator pools
        for a in frames:
            d.compute(a, gradients=True, n_threads=1)
    before = _rss_mb()
    for _ in range(6):
        for a in frames:
            d.compute(a, gradients=True, n_threads=1)
    assert _rss_mb() - before < 4.0
