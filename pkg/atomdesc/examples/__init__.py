"""Example structures and hyper-parameters that ship with atomdesc."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

#: Mixed example set: rattled bulk Si, a periodic water box, CuAu, molecules (extxyz).
STRUCTURES = HERE / "structures.extxyz"
#: An n2p2-like ACSF parameter set: 8 G2 and 8 G4, r_cut = 6 Å.
ACSF_N2P2 = HERE / "acsf_n2p2.json"
