"""Shared fixtures: structures of every kind the descriptors must handle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

import atomdesc


def pytest_report_header(config):
    from atomdesc import kernels

    return [f"atomdesc: {atomdesc.__file__}",
            f"kernels: {kernels.VARIANT} ({kernels.extension.__file__})"]


def random_cell_structure(seed, n_atoms, symbols, cell, pbc=True, min_dist=0.9):
    """Random positions in a cell with no two atoms (or images) closer than min_dist."""
    rng = np.random.default_rng(seed)
    cell = np.asarray(cell, dtype=float)
    atoms = Atoms(cell=cell, pbc=pbc)
    while len(atoms) < n_atoms:
        trial = atoms + Atoms(symbols[len(atoms) % len(symbols)],
                              positions=[rng.random(3) @ cell], cell=cell, pbc=pbc)
        if len(trial) == 1 or trial.get_distances(len(trial) - 1, range(len(trial) - 1),
                                                  mic=bool(np.any(pbc))).min() > min_dist:
            atoms = trial
    return atoms


@pytest.fixture
def triclinic():
    """A periodic triclinic cell with three species."""
    cell = [[5.0, 0.0, 0.0], [1.2, 4.6, 0.0], [0.7, -0.9, 5.3]]
    return random_cell_structure(1, 14, ["H", "O", "Si"], cell)


@pytest.fixture
def small_cell():
    """A periodic cell much smaller than the cutoff: many images of every atom."""
    atoms = bulk("Si", "diamond", a=5.43)  # 2 atoms, fcc primitive cell
    atoms.rattle(0.05, seed=3)
    return atoms


@pytest.fixture
def mixed_pbc():
    """A slab: periodic in x and y only."""
    cell = [[4.5, 0.0, 0.0], [0.8, 4.2, 0.0], [0.0, 0.0, 9.0]]
    return random_cell_structure(5, 10, ["H", "O"], cell, pbc=[True, True, False])


@pytest.fixture
def molecule_ch3oh():
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=4)
    return atoms


def strained(atoms, eps):
    """atoms under the homogeneous strain r -> (1 + eps) r of positions and cell."""
    out = atoms.copy()
    deformation = np.eye(3) + eps
    out.positions = atoms.positions @ deformation.T
    out.cell = atoms.cell[:] @ deformation.T
    return out


def finite_difference_gradients(descriptor, atoms, centers=None, h=1e-5):
    """Dense d features / d positions by central differences: (n_centers, n_atoms, 3, n_features)."""
    base = descriptor.compute(atoms, centers=centers).features
    grad = np.zeros((base.shape[0], len(atoms), 3, base.shape[1]))
    for a in range(len(atoms)):
        for x in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, x] += h
            minus.positions[a, x] -= h
            grad[:, a, x] = (descriptor.compute(plus, centers=centers).features
                             - descriptor.compute(minus, centers=centers).features) / (2 * h)
    return grad


def finite_difference_strain(descriptor, atoms, centers=None, h=1e-5):
    """d features / d eps_ab by central differences: (n_centers, 3, 3, n_features).
    Centres given as points ((n, 3)) are strained with the atoms."""
    base = descriptor.compute(atoms, centers=centers).features
    grad = np.zeros((base.shape[0], 3, 3, base.shape[1]))
    points = centers is not None and np.ndim(centers) == 2

    def features(eps):
        moved = centers @ (np.eye(3) + eps).T if points else centers
        return descriptor.compute(strained(atoms, eps), centers=moved).features

    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = h
            grad[:, a, b] = (features(eps) - features(-eps)) / (2 * h)
    return grad


def relative_error(actual, expected):
    """max |actual - expected| / max |expected| (the scale of the whole array)."""
    return np.max(np.abs(actual - expected)) / np.max(np.abs(expected))


def random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q


@pytest.fixture
def resident_mib():
    """The resident size of this process in MiB, as a function (Linux: /proc/self/statm)."""
    import os

    def read() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    return read


@pytest.fixture
def checks():
    """Numerical helpers shared by the family tests."""
    import types

    return types.SimpleNamespace(
        strained=strained,
        fd_gradients=finite_difference_gradients,
        fd_strain=finite_difference_strain,
        relative_error=relative_error,
        random_rotation=random_rotation,
    )


# ------------------------------------------------ the example third-party plugin

EXAMPLE_PLUGIN = Path(__file__).parent / "fixtures" / "atomdesc-example-plugin"


def fake_distribution(path: Path, name: str, entry_points: dict[str, str]) -> None:
    """Make ``path`` look like an installed distribution with atomdesc entry points."""
    dist = path / f"{name.replace('-', '_')}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[atomdesc]\n{lines}")


@pytest.fixture
def example_plugin(tmp_path, monkeypatch):
    """The example plugin package on sys.path, as if pip-installed."""
    fake_distribution(tmp_path, "atomdesc-example-plugin", {"example": "atomdesc_example_plugin"})
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ATOMDESC_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    atomdesc.reload_plugins()
    yield tmp_path
    monkeypatch.undo()
    atomdesc.reload_plugins()


@pytest.fixture
def make_distribution():
    """fake_distribution(path, name, entry_points), for tests that add plugins of their own."""
    return fake_distribution


# ---------------------------------------------------------------- analysis tests

_ETAS = [0.05, 0.2, 0.5, 1.0, 2.0, 4.0]


@pytest.fixture(scope="session")
def acsf_g2_g4():
    """The ACSF parameter set of the analysis tests and docs/acsf_analysis.json: 12 G2, 24 G4."""
    g2 = [[eta, r_s] for eta in _ETAS for r_s in (0.0, 1.0)]
    g4 = [[eta, zeta, lam] for eta in (0.01, 0.1, 0.5) for zeta in (1, 2, 4, 8) for lam in (1, -1)]
    return g2, g4


@pytest.fixture(scope="module")
def acsf(acsf_g2_g4):
    """Rich enough (98 features, many eta/zeta/lambda) that ranks are about the structure."""
    g2, g4 = acsf_g2_g4
    return atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0, g2_params=g2, g4_params=g4)
