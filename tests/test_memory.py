"""The kernels give back what they allocate: repeated calls do not grow the process."""

from __future__ import annotations

import json
import sys

import ase.build
import ase.io
import numpy as np
import pytest

import atomdesc
from atomdesc import examples

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the resident size from /proc")


@pytest.mark.parametrize("hypers", [
    json.loads(examples.ACSF_N2P2.read_text()),
    {"family": "soap", "species": ["C", "H", "N", "O", "Si"], "r_cut": 4.0, "n_max": 4,
     "l_max": 3},
], ids=["acsf", "soap"])
def test_repeated_calls_do_not_leak(hypers, resident_mib):
    # gfortran 12 left the per-thread work arrays of every call allocated
    # (~14 kB per small molecule with gradients): 6 x 202 calls grew the process by 17 MB (ACSF) and 26 MB (SOAP).
    frames = ase.io.read(examples.STRUCTURES, ":")
    species = sorted({s for a in frames for s in a.get_chemical_symbols()})
    d = atomdesc.descriptor_from_hypers({**hypers, "species": species})
    for _ in range(2):  # warm up: imports, caches, allocator pools
        for a in frames:
            d.compute(a, gradients=True, n_threads=1)
    before = resident_mib()
    for _ in range(6):
        for a in frames:
            d.compute(a, gradients=True, n_threads=1)
    assert resident_mib() - before < 4.0


def test_untouched_zeros_take_memory_only_where_written(resident_mib):
    from atomdesc.output_memory import untouched_zeros

    before = resident_mib()
    zeros = untouched_zeros((64, 2**17))  # 64 MiB
    zeros[:, ::2**16] = 1.0  # two 8-byte writes per MiB
    assert resident_mib() - before < 4.0  # 128 pages of 4 KiB; huge pages would make it 64 MiB
    assert zeros.sum() == 128.0 and resident_mib() - before < 4.0  # reading maps no memory


FOURTEEN_SPECIES = ["H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Al", "Si", "P", "S", "Cl"]


def _resident_growth(family: str, atoms, resident_mib) -> tuple[float, float]:
    """Logical size and resident growth (MiB) of a 14-species result with gradients and
    strain, after a warm-up call."""
    d = atomdesc.descriptor(family, species=FOURTEEN_SPECIES, r_cut=5.0, n_max=8, l_max=6,
                            sigma=0.3)
    d.compute(ase.build.molecule("CH4"), gradients=True, strain_gradients=True, n_threads=1)
    before = resident_mib()
    result = d.compute(atoms, gradients=True, strain_gradients=True, n_threads=1)
    growth = resident_mib() - before
    assert np.abs(result.gradient_values).max() > 0
    logical = sum(a.nbytes for a in (result.features, result.gradient_values,
                                     result.strain_gradients)) / 2**20
    return logical, growth


def test_many_species_few_present_stay_small(resident_mib):
    """A 14-species power spectrum of methane: of the 47 040 columns, the blocks of
    H and C are written; the zeros of the other species take no memory."""
    logical, growth = _resident_growth("soap", ase.build.molecule("CH4"), resident_mib)
    assert logical > 30.0
    assert growth < logical / 8


def test_many_species_expansion_stays_small(resident_mib):
    """The spherical expansion of 50 methane molecules with 14 species: only the H and C
    channel blocks of each row are written; the other twelve take no memory."""
    methane = ase.build.molecule("CH4")
    atoms = ase.Atoms()
    for k in range(50):  # far apart: one structure, one kernel call
        m = methane.copy()
        m.positions += 12.0 * np.array([k % 5, (k // 5) % 5, k // 25])
        atoms += m
    logical, growth = _resident_growth("spherical_expansion", atoms, resident_mib)
    assert logical > 200.0
    assert growth < logical / 3  # measured: 61 of 262 MiB
