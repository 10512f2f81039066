"""The plugin registry: built-ins, a third-party package, broken plugins, autoload switch."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

import atomdesc
from atomdesc.plugins.soap_angular import real_ylm
from atomdesc.radial import gaussian_radial_integral
from atomdesc.registry import PluginLoadWarning, Registry, make_plugin_manager
from atomdesc.splines import hermite_evaluate

def test_builtins_are_listed_with_their_origin():
    rows = {r["name"]: r for r in atomdesc.families()}
    assert rows["acsf"]["distribution"] == "atomdesc (built-in)"
    assert rows["acsf"]["plugin"] == "atomdesc.plugins.acsf"
    registry = Registry(make_plugin_manager(entry_points=False))
    assert {"cosine", "tanh3", "polynomial"} <= set(registry.cutoffs)


def test_third_party_family_is_found_listed_and_computed(example_plugin, checks):
    rows = {r["name"]: r for r in atomdesc.families()}
    assert rows["coordination"]["distribution"] == "atomdesc-example-plugin"
    assert rows["coordination"]["plugin"] == "example"

    atoms = molecule("CH3OH")
    d = atomdesc.descriptor("coordination", species=["H", "C", "O"], r_cut=3.0)
    res = d.compute(atoms, gradients=True, strain_gradients=True)
    assert res.features.shape == (6, 3)
    assert checks.relative_error(res.dense_gradients(), checks.fd_gradients(d, atoms)) <= 1e-6
    assert checks.relative_error(res.strain_gradients, checks.fd_strain(d, atoms)) <= 1e-6
    again = atomdesc.descriptor_from_hypers(d.hypers)
    np.testing.assert_array_equal(again.compute(atoms).features, res.features)


def test_third_party_cutoff_runs_in_the_fortran_kernels(example_plugin, checks):
    atoms = molecule("CH3OH")
    d = atomdesc.descriptor("acsf", species=["H", "C", "O"], r_cut=3.0, cutoff="bump",
                            g2_params=[[0.5, 1.0]], g4_params=[[0.1, 2, 1]])
    # G1 through the spline table equals the plugin's own numpy evaluation
    cutoff = atomdesc.get_registry().cutoff("bump").obj(3.0)
    distances = atoms.get_all_distances()
    expected = cutoff.evaluate(distances)[0] - np.eye(len(atoms))
    numbers = atoms.numbers
    res = d.compute(atoms, gradients=True, strain_gradients=True)
    g1_columns = [i for i, label in enumerate(d.feature_labels) if label[0] == "G1"]
    for column, z in zip(g1_columns, (1, 6, 8)):
        np.testing.assert_allclose(res.features[:, column], expected[:, numbers == z].sum(1),
                                   rtol=1e-8, atol=1e-12)
    assert checks.relative_error(res.dense_gradients(), checks.fd_gradients(d, atoms)) <= 1e-6
    assert checks.relative_error(res.strain_gradients, checks.fd_strain(d, atoms)) <= 1e-6


def test_spline_table_accuracy(example_plugin):
    cutoff = atomdesc.get_registry().cutoff("bump").obj(4.0)
    _, cpar, table = cutoff.kernel_args()
    r = np.random.default_rng(0).uniform(0, 4.0, 10_000)
    f, df = hermite_evaluate(table.T, cpar[1:].reshape(int(cpar[0]), 3), r)
    exact, dexact = cutoff.evaluate(r)
    assert np.max(np.abs(f - exact)) <= 1e-8 * np.max(np.abs(exact))
    assert np.max(np.abs(df - dexact)) <= 1e-5 * np.max(np.abs(dexact))


def test_third_party_radial_basis_is_orthonormal(example_plugin):
    provided = atomdesc.get_registry().radial_basis("spherical_bessel")
    assert provided.distribution == "atomdesc-example-plugin"
    basis = provided.obj(n_max=6, l_max=3, r_cut=4.0)
    np.testing.assert_allclose(basis.overlap(), np.broadcast_to(np.eye(6), (4, 6, 6)), atol=1e-10)


def test_third_party_radial_basis_runs_in_the_soap_kernels(example_plugin):
    # the kernel's expansion of one neighbour equals the plugin's basis integrated directly
    e = atomdesc.descriptor("spherical_expansion", species=["H"], r_cut=3.0, n_max=3, l_max=4,
                            sigma=0.4, rbf="spherical_bessel", cutoff="none")
    atoms = Atoms("HH", positions=[[0, 0, 0], [0.3, -0.8, 1.1]])
    c = e.compute(atoms, centers=[0]).features[0].reshape(3, 25)  # (n, lm)
    r = np.linalg.norm(atoms.positions[1])
    integral, _ = gaussian_radial_integral(e.basis, np.array([r, 0.0]), 0.4)
    y = real_ylm(4, atoms.positions[1:] / r)[0]
    ls = np.repeat(np.arange(5), 2 * np.arange(5) + 1)
    expected = integral[ls, :, 0].T * y[None, :]
    expected[:, 0] += integral[0, :, 1] / np.sqrt(4 * np.pi)  # the centre's own density
    np.testing.assert_allclose(c, expected, rtol=1e-8, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("family", ["soap", "bispectrum"])
def test_third_party_radial_basis_derivatives(example_plugin, checks, family):
    d = atomdesc.descriptor(family, species=["H", "C", "O"], r_cut=3.0, n_max=3, l_max=2,
                            sigma=0.5, rbf="spherical_bessel")
    periodic = bulk("NaCl", "rocksalt", a=3.4, cubic=False)
    periodic.set_chemical_symbols(["C", "O"])
    periodic.rattle(0.05, seed=1)
    for atoms in (molecule("CH3OH"), periodic):
        res = d.compute(atoms, gradients=True, strain_gradients=True)
        assert checks.relative_error(res.dense_gradients(), checks.fd_gradients(d, atoms)) <= 1e-6
        assert checks.relative_error(res.strain_gradients, checks.fd_strain(d, atoms)) <= 1e-6
    again = atomdesc.descriptor_from_hypers(d.hypers)
    np.testing.assert_array_equal(again.compute(periodic).features, res.features)


def test_broken_plugin_is_reported_and_others_still_work(example_plugin, make_distribution):
    (example_plugin / "broken_atomdesc_plugin.py").write_text("raise ImportError('no numpy 0.1')\n")
    (example_plugin / "typo_atomdesc_plugin.py").write_text(textwrap.dedent("""
        import atomdesc

        @atomdesc.hookimpl
        def atomdesc_familys():  # misspelled hook: must be refused, not ignored
            return []
    """))
    make_distribution(example_plugin, "broken-plugin", {"broken": "broken_atomdesc_plugin"})
    make_distribution(example_plugin, "typo-plugin", {"typo": "typo_atomdesc_plugin"})
    with pytest.warns(PluginLoadWarning) as caught:
        registry = atomdesc.reload_plugins()
    messages = " ".join(str(w.message) for w in caught)
    assert "'broken-plugin'" in messages and "no numpy 0.1" in messages
    assert "'typo-plugin'" in messages and "atomdesc_familys" in messages
    assert {"acsf", "coordination"} <= set(registry.families)
    with pytest.raises(ValueError, match=r"failed to load: .*'broken' \(broken-plugin\)"):
        atomdesc.descriptor("broken_family")


def test_autoload_can_be_disabled_or_blocked(example_plugin, monkeypatch):
    assert "coordination" in Registry(make_plugin_manager()).families
    assert "coordination" not in Registry(make_plugin_manager(blocked=("example",))).families
    monkeypatch.setenv("ATOMDESC_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "coordination" not in Registry(make_plugin_manager()).families
