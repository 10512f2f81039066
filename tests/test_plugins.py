"""The plugin registry: built-ins, a third-party package, broken plugins, autoload switch."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from ase.build import molecule

import atomdesc
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
    _, _, table = cutoff.kernel_args()
    r = np.random.default_rng(0).uniform(0, 4.0, 10_000)
    f, df = hermite_evaluate(table.T, 4.0, r)
    exact, dexact = cutoff.evaluate(r)
    assert np.max(np.abs(f - exact)) <= 1e-8 * np.max(np.abs(exact))
    assert np.max(np.abs(df - dexact)) <= 1e-5 * np.max(np.abs(dexact))


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
