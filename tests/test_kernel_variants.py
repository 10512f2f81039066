"""The kernel variants (baseline, x86-64-v3): selection, and the same numbers from both."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import atomdesc
from atomdesc import kernels

X86_64 = platform.machine().lower() in ("x86_64", "amd64")

needs_v3 = pytest.mark.skipif(
    not (X86_64 and kernels.cpu_supports_v3()), reason="this CPU cannot run the x86-64-v3 kernels"
)


def variant_in_subprocess(value: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(kernels.ENV_VAR, None)
    if value is not None:
        env[kernels.ENV_VAR] = value
    code = "from atomdesc import kernels; print(kernels.VARIANT, kernels.extension.__name__)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_both_variants_are_built_on_x86_64():
    expected = ["v3", "baseline"] if X86_64 else ["baseline"]
    assert kernels.available() == expected


def test_default_choice_follows_the_cpu():
    out = variant_in_subprocess(None)
    assert out.returncode == 0, out.stderr
    expected = "v3" if X86_64 and kernels.cpu_supports_v3() else "baseline"
    assert out.stdout.split() == [expected, kernels.MODULES[expected]]


@pytest.mark.parametrize("variant", ["baseline", pytest.param("v3", marks=needs_v3)])
def test_environment_variable_forces_a_variant(variant):
    out = variant_in_subprocess(variant)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [variant, kernels.MODULES[variant]]


def test_unknown_variant_is_a_clear_error():
    out = variant_in_subprocess("avx9")
    assert out.returncode != 0
    assert "ATOMDESC_KERNELS='avx9'" in out.stderr and "baseline" in out.stderr


def test_forcing_a_missing_variant_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(kernels.MODULES, "v3", "atomdesc._kernels_not_built")
    with pytest.raises(ImportError, match="built without that kernel variant"):
        kernels._select("v3")
    assert kernels._select("") == ("baseline", kernels.load("baseline"))


def test_show_config_reports_the_variant_in_use(capsys):
    info = atomdesc.show_config("dicts")["kernels"]
    assert info["variant"] == kernels.VARIANT
    assert info["module"] == kernels.MODULES[kernels.VARIANT]
    assert info["forced_by"] == (f"ATOMDESC_KERNELS={kernels.FORCED}" if kernels.FORCED else None)
    assert kernels.fortran is kernels.load(kernels.VARIANT).kernels
    atomdesc.show_config()
    assert f"  variant: {kernels.VARIANT}\n" in capsys.readouterr().out


# --------------------------------------------- the same numbers from both variants

def compute_with(variant, monkeypatch, descriptor, atoms):
    """``descriptor.compute`` with every kernel call going to ``variant``'s extension."""
    with monkeypatch.context() as m:
        m.setattr(kernels, "fortran", kernels.load(variant).kernels)
        return descriptor.compute(atoms, gradients=True, strain_gradients=True)


DESCRIPTORS = {
    "acsf": dict(species=["H", "O", "Si"], r_cut=4.5,
                 g2_params=[[0.1, 0.0], [1.0, 1.5]], g3_params=[1.0],
                 g4_params=[[0.01, 1, 1], [0.1, 4, -1]], g5_params=[[0.05, 2, 1]]),
    "spherical_expansion": dict(species=["H", "O", "Si"], r_cut=4.5, n_max=5, l_max=4, sigma=0.4),
    "soap": dict(species=["H", "O", "Si"], r_cut=4.5, n_max=6, l_max=5, sigma=0.4),
    "bispectrum": dict(species=["H", "O", "Si"], r_cut=4.5, n_max=3, l_max=3, sigma=0.4),
}


@needs_v3
@pytest.mark.parametrize("family", DESCRIPTORS)
def test_variants_agree(family, triclinic, monkeypatch):
    base, v3 = kernels.load("baseline"), kernels.load("v3")
    assert base is not v3 and base.__file__ != v3.__file__
    d = atomdesc.descriptor(family, **DESCRIPTORS[family])
    a = compute_with("baseline", monkeypatch, d, triclinic)
    b = compute_with("v3", monkeypatch, d, triclinic)
    np.testing.assert_array_equal(a.gradient_pairs, b.gradient_pairs)
    for name in ("features", "gradient_values", "strain_gradients"):
        x, y = getattr(a, name), getattr(b, name)
        assert np.abs(x).max() > 0
        # FMA contracts a*b + c with one rounding instead of two: not bit-identical,
        # but equal to a few ulps of the array's scale (measured <= 1e-15 of it; 1e-13
        # while the splines' derivatives summed terms ~ y / h that cancel).
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-14 * np.abs(x).max(), err_msg=name)


@pytest.mark.parametrize("user, expected", [
    ({}, ("10000", "True")),                              # set before libgomp loads
    ({"GOMP_SPINCOUNT": "5"}, ("5", "False")),            # the user's choice stays
    ({"OMP_WAIT_POLICY": "active"}, ("None", "False")),   # so does a wait policy
])
def test_openmp_spinning_is_limited_unless_the_user_chose(user, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(user)
    code = ("import os; from atomdesc import kernels; "
            "print(os.environ.get('GOMP_SPINCOUNT'), kernels.SPIN_COUNT_SET)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert tuple(out.stdout.split()) == expected
