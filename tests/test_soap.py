"""The SOAP families: spherical expansion, power spectrum, bispectrum."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read

import atomdesc
from atomdesc.plugins import soap as soap_plugin
from atomdesc.plugins.soap_angular import coupling_tensor, real_ylm
from atomdesc.plugins.soap_radial import GTOBasis
from atomdesc.radial import gaussian_radial_integral
from atomdesc.registry import get_registry

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "structures"
if not SHARED.exists():
    SHARED = Path("/work/shared/data/structures")

FAMILIES = ["spherical_expansion", "soap", "bispectrum"]


def small(family, **kw):
    hypers = dict(species=["H", "C", "O"], r_cut=3.5, n_max=2, l_max=3, sigma=0.5)
    hypers.update(kw)
    return atomdesc.descriptor(family, **hypers)


@pytest.fixture(scope="module")
def molecule_hco():
    rng = np.random.default_rng(0)
    pos = np.array([[0, 0, 0], [1.1, 0, 0], [-0.4, 1.0, 0.1], [-0.3, -0.5, 0.9], [0.2, -0.6, -1.1],
                    [2.3, 0.9, 0.4]], dtype=float)
    pos += rng.normal(scale=0.1, size=pos.shape)
    return Atoms("CHHHHO", positions=pos)


@pytest.fixture(scope="module")
def periodic_hco():
    rng = np.random.default_rng(3)
    cell = np.array([[3.6, 0.0, 0.0], [0.5, 3.4, 0.0], [0.3, -0.4, 3.8]])
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.1], [0.25, 0.7, 0.6], [0.8, 0.2, 0.45]])
    atoms = Atoms("COHH", scaled_positions=frac, cell=cell, pbc=True)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def finite_difference_errors(d, atoms, checks):
    """Relative errors of the analytic position and strain gradients against central
    differences."""
    res = d.compute(atoms, gradients=True, strain_gradients=True)
    grad_err = checks.relative_error(res.dense_gradients(), checks.fd_gradients(d, atoms))
    strain_err = checks.relative_error(res.strain_gradients, checks.fd_strain(d, atoms))
    return grad_err, strain_err


# ------------------------------------------------------------------ hyper-parameters


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(n_max=0), "n_max"),
        (dict(l_max=-1), "l_max"),
        (dict(l_max=21), "l_max"),
        (dict(sigma=0.0), "sigma"),
        (dict(sigma=-1.0), "sigma"),
        (dict(rbf="nope"), "radial basis"),
        (dict(compression="mu3"), "compression"),
        (dict(average="middle"), "average"),
        (dict(convention="quip"), "convention"),
        (dict(weighting={"function": "gauss", "r0": 1, "c": 1}), "weighting"),
        (dict(weighting={"function": "poly", "r0": 1, "c": 1}), "needs 'm'"),
        (dict(r_cut=-2.0), "r_cut"),
        (dict(convention="dscribe", cutoff="cosine"), "no cutoff"),
    ],
)
def test_bad_hypers(bad, match):
    with pytest.raises(ValueError, match=match):
        small("soap", **bad)


def test_bispectrum_parity_checked():
    with pytest.raises(ValueError, match="parity"):
        small("bispectrum", parity="odd")


def test_hypers_roundtrip():
    d = small("soap", compression={"mode": "mu2", "species_weighting": {"H": 1.0, "C": 2.0, "O": 3.0}})
    again = atomdesc.descriptor_from_hypers(json.loads(json.dumps(d.hypers)))
    assert again == d
    assert atomdesc.SOAP is soap_plugin.SOAP


# ------------------------------------------------------------------ radial bases


@pytest.mark.parametrize("name", ["gto", "gto_featomic", "polynomial"])
def test_radial_orthonormal(name):
    basis = get_registry().radial_basis(name).obj(n_max=5, l_max=3, r_cut=4.0)
    overlap = basis.overlap()
    for l in range(4):
        np.testing.assert_allclose(overlap[l], np.eye(5), atol=1e-7)


def test_gto_closed_form_matches_quadrature():
    basis = GTOBasis(n_max=4, l_max=4, r_cut=4.0)
    r = np.linspace(0.0, 5.0, 57)
    closed, dclosed = basis.radial_integral(r, 0.4)
    basis.radial_integral = lambda r, sigma: None
    quad, dquad = gaussian_radial_integral(basis, r, 0.4, n_panels=20, n_nodes=24)
    assert np.abs(closed - quad).max() <= 1e-11 * np.abs(closed).max()
    assert np.abs(dclosed - dquad).max() <= 1e-11 * np.abs(dclosed).max()


def test_radial_table_accuracy():
    d = small("soap", rbf="gto")
    table = d._rtab
    r = np.random.default_rng(1).uniform(0, d.r_max, 500)
    exact, dexact = (a.reshape(-1, len(r)) for a in d._radial_functions(r))
    for k in range(table.data.shape[2]):
        approx, dapprox = table.evaluate(r, k)
        assert np.abs(approx - exact[k]).max() <= 1e-8 * np.abs(table.data[:, 0, k]).max()
        # derivatives as close as the features to another code's exact derivatives
        assert np.abs(dapprox - dexact[k]).max() <= 1e-8 * np.abs(table.data[:, 1, k]).max()


#: a cut-off whose default smoothing (shifted cosine, width 0.5) starts at no simple
#: fraction of it: the radial table needs a node there (ethanol has 14 pairs in between)
ODD_R_CUT = 2.5837


@pytest.mark.parametrize("family", FAMILIES)
def test_default_cutoff_at_any_radius(family, molecule_ch3oh, checks):
    atoms = molecule_ch3oh
    distances = atoms.get_all_distances()
    assert ((distances > ODD_R_CUT - 0.5) & (distances < ODD_R_CUT)).sum() >= 10
    l_max = 2 if family == "bispectrum" else 3
    few = small(family, r_cut=ODD_R_CUT, n_max=3, l_max=l_max)
    # with many species, each centre's few channels take the kernel's zeroed path
    many = small(family, r_cut=ODD_R_CUT, n_max=3, l_max=l_max,
                 species=["H", "C", "N", "O", "F", "P", "S"])
    assert few._rtab.grid[1, 0] == ODD_R_CUT - 0.5
    r = np.random.default_rng(5).uniform(0, ODD_R_CUT, 2000)
    exact = few._radial_functions(r)[0].reshape(-1, len(r))
    for k in range(len(exact)):
        approx, _ = few._rtab.evaluate(r, k)
        assert np.abs(approx - exact[k]).max() <= 1e-8 * np.abs(exact[k]).max()
    dense, sparse = few.compute(atoms).features, many.compute(atoms).features
    column = {label: k for k, label in enumerate(many.feature_labels)}
    same = [column[label] for label in few.feature_labels]
    assert np.abs(sparse[:, same] - dense).max() <= 1e-14 * np.abs(dense).max()
    for d in (few, many):
        grad_err, strain_err = finite_difference_errors(d, atoms, checks)
        assert grad_err <= 1e-6 and strain_err <= 1e-6


def test_scaled_spherical_in_orders_match_scipy_order_by_order():
    from atomdesc.radial import scaled_spherical_in, scaled_spherical_in_orders

    z = np.concatenate([[0.0, 1e-300, 1e-30, 1e-12], np.logspace(-8, 3.5, 500)])
    for l_max in (0, 1, 2, 9, 21):
        together = scaled_spherical_in_orders(l_max, z)
        for l in range(l_max + 1):
            alone = scaled_spherical_in(l, z)
            # scipy's own values are good to ~1e-13 (against mpmath); the
            # recurrence inherits that from its two starting orders
            np.testing.assert_allclose(together[l], alone, rtol=1e-12, atol=0)


# ------------------------------------------------------------------ derivatives


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"compression": "mu2"},
        {"compression": {"mode": "crossover", "species_weighting": {"H": 0.5, "C": 1.0, "O": 2.0}}},
        {"average": "inner"},
        {"average": "outer"},
        {"weighting": {"function": "pow", "r0": 1.5, "c": 1.0, "d": 1.0, "m": 3.0}},
        {"convention": "dscribe", "weighting": {"function": "poly", "r0": 3.0, "c": 1.0, "m": 3.0}},
        {"rbf": "polynomial", "cutoff": "cosine"},
    ],
    ids=["plain", "mu2", "crossover", "inner", "outer", "pow", "dscribe_poly_w", "polynomial"],
)
def test_derivatives_molecule(family, options, molecule_hco, checks):
    d = small(family, **options)
    grad_err, strain_err = finite_difference_errors(d, molecule_hco, checks)
    assert grad_err <= 1e-6
    assert strain_err <= 1e-6


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("options", [{}, {"average": "inner", "compression": "mu2"}, {"average": "outer"}])
def test_derivatives_periodic(family, options, periodic_hco, checks):
    d = small(family, r_cut=3.0, **options)
    grad_err, strain_err = finite_difference_errors(d, periodic_hco, checks)
    assert grad_err <= 1e-6
    assert strain_err <= 1e-6


@pytest.mark.parametrize("average", ["off", "inner"])
@pytest.mark.parametrize("structure", ["molecule_hco", "periodic_hco"])
def test_bispectrum_pseudoscalar_derivatives(structure, average, request, checks):
    """parity="all": the odd-l invariants' derivatives too (their coupling tensors are the
    imaginary parts), per centre and of the mean coefficients."""
    d = small("bispectrum", r_cut=3.0, parity="all", average=average)
    grad_err, strain_err = finite_difference_errors(d, request.getfixturevalue(structure), checks)
    assert grad_err <= 1e-6
    assert strain_err <= 1e-6


@pytest.mark.parametrize("structure", ["molecule_hco", "periodic_hco"])
def test_bispectrum_derivatives_at_l_max_8(structure, request, checks):
    """The coupling tensors' whole range (l up to 8, odd sums too), per centre."""
    d = small("bispectrum", r_cut=3.0, n_max=1, l_max=8, parity="all")
    grad_err, strain_err = finite_difference_errors(d, request.getfixturevalue(structure), checks)
    assert grad_err <= 1e-6
    assert strain_err <= 1e-6


@pytest.mark.parametrize("compression", ["off", "crossover"])
def test_bispectrum_adjoint_keys(compression):
    """Each feature's key for slot s names its tensor, l_s and the other two orbitals
    (what the adjoint depends on), features differing only in slot s's orbital share
    it, and a channel's list holds exactly the keys of the features with that channel
    in the slot."""
    d = small("bispectrum", n_max=3, compression=compression)
    fmap, keys, fkeys = d._fmap, d._keys, d._feature_keys
    assert len(np.unique(keys, axis=0)) == len(keys)
    others = ((1, 2), (0, 2), (0, 1))
    orbital = [fmap[:, 3 * k:3 * k + 3] for k in range(3)]
    for s, (p, q) in enumerate(others):
        expected = np.column_stack([np.full(len(fmap), s + 1), fmap[:, 9], orbital[s][:, 2],
                                    orbital[p], orbital[q]])
        np.testing.assert_array_equal(keys[fkeys[:, s] - 1], expected)
    assert len(keys) < 3 * len(fmap) / 2  # shared
    start, listed = d._channel_keys_start, d._channel_keys
    for a in range(1, d.n_channels + 1):
        want = {int(fkeys[f, s]) for s in range(3) for f in np.flatnonzero(orbital[s][:, 0] == a)}
        got = listed[start[a - 1]:start[a]]
        assert len(got) == len(set(got.tolist())) and set(got.tolist()) == want


@pytest.mark.parametrize("average", ["off", "inner"])
@pytest.mark.parametrize("table", ["_feature_keys", "_channel_keys_start", "_channel_keys"])
def test_bispectrum_key_tables_checked_before_the_kernel(table, average, molecule_hco):
    """The kernels index the key tables as far as the feature map goes: tables that do
    not match it are refused in Python."""
    d = small("bispectrum", average=average)
    setattr(d, table, getattr(d, table)[:-1])
    with pytest.raises(RuntimeError, match="feature map disagree"):
        d.compute(molecule_hco, gradients=True)


# ------------------------------------------------------------------ compression mu1nu1


def test_mu1nu1_is_each_channel_times_the_summed_density(molecule_hco):
    """Darby et al.'s mu=1, nu=1: p(a n, * n', l) = sum_m c^a_nlm (sum_b c^b_n'lm) / sqrt(2l+1),
    checked against the coefficients of the spherical expansion."""
    weights = {"H": 0.5, "C": 1.0, "O": 2.0}
    compression = {"mode": "mu1nu1", "species_weighting": weights}
    d = small("soap", compression=compression)
    expansion = small("spherical_expansion", compression={"mode": "off", "species_weighting": weights})
    n_max, nlm = d.n_max, (d.l_max + 1) ** 2
    c = expansion.compute(molecule_hco).features.reshape(len(molecule_hco), 3, n_max, nlm)
    summed = c.sum(axis=1)
    column = {label: k for k, label in enumerate(d.feature_labels)}
    assert len(column) == 3 * n_max * n_max * (d.l_max + 1)
    got = d.compute(molecule_hco).features
    for a, species in enumerate(d.species):
        for l in range(d.l_max + 1):
            m = slice(l * l, (l + 1) ** 2)
            for n1 in range(n_max):
                for n2 in range(n_max):
                    want = (c[:, a, n1, m] * summed[:, n2, m]).sum(axis=1) / np.sqrt(2 * l + 1)
                    np.testing.assert_allclose(got[:, column[(species, n1, "*", n2, l)]], want,
                                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("system", ["molecule", "periodic"])
@pytest.mark.parametrize("average", ["off", "inner", "outer"])
def test_mu1nu1_derivatives(system, average, molecule_hco, periodic_hco, checks):
    atoms = {"molecule": molecule_hco, "periodic": periodic_hco}[system]
    d = small("soap", r_cut=3.0, average=average,
              compression={"mode": "mu1nu1", "species_weighting": {"H": 0.5, "C": 1.0, "O": 2.0}})
    grad_err, strain_err = finite_difference_errors(d, atoms, checks)
    assert grad_err <= 1e-6
    assert strain_err <= 1e-6


@pytest.mark.parametrize("system", ["molecule", "periodic"])
def test_mu1nu1_written_into_zeros(system, molecule_hco, periodic_hco, monkeypatch, checks):
    """Many species, few around each centre: the zeroed path (one block per species
    present) gives the numbers of the path that writes every element, and finite
    differences hold there too."""
    atoms = {"molecule": molecule_hco, "periodic": periodic_hco}[system]
    d = small("soap", species=MANY_SPECIES, r_cut=3.0, compression="mu1nu1")
    forced = {}
    for sparse in (True, False):
        monkeypatch.setattr(soap_plugin._DensityExpansion, "_few_channels_around",
                            lambda *a, sparse=sparse: sparse)
        forced[sparse] = d.compute(atoms, gradients=True, strain_gradients=True)
    for name in ("features", "gradient_values", "strain_gradients"):
        assert np.array_equal(getattr(forced[True], name), getattr(forced[False], name))
    monkeypatch.undo()
    grad_err, strain_err = finite_difference_errors(d, atoms, checks)
    assert grad_err <= 1e-6
    assert strain_err <= 1e-6


def test_mu1nu1_rotation_invariant_and_thread_independent(molecule_hco, checks):
    d = small("soap", l_max=4, compression="mu1nu1")
    a = d.compute(molecule_hco, gradients=True, n_threads=1)
    b = d.compute(molecule_hco, gradients=True, n_threads=2)
    assert np.array_equal(a.features, b.features)
    assert np.array_equal(a.gradient_values, b.gradient_values)
    rot = molecule_hco.copy()
    rot.positions = molecule_hco.positions @ checks.random_rotation(5).T
    assert np.abs(d.compute(rot).features - a.features).max() <= 1e-12 * np.abs(a.features).max()


@pytest.mark.parametrize("family", ["spherical_expansion", "bispectrum"])
def test_mu1nu1_only_for_the_power_spectrum(family):
    with pytest.raises(ValueError, match="mu1nu1"):
        small(family, compression="mu1nu1")


# ------------------------------------------------------------------ symmetry


@pytest.mark.parametrize("family, options", [("soap", {}), ("bispectrum", {"parity": "all"})])
def test_rotation_invariance(family, options, molecule_hco, checks):
    d = small(family, l_max=4, **options)
    a = d.compute(molecule_hco).features
    for seed in range(3):
        rot = molecule_hco.copy()
        rot.positions = molecule_hco.positions @ checks.random_rotation(seed).T
        b = d.compute(rot).features
        assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max()


def test_coupling_tensors_are_invariant_up_to_l_max_8(checks):
    """Every real coupling tensor T(l1, l2, l3), l1 <= l2 <= l3 <= l1 + l2 <= ... up to 8:
    unit norm, unchanged by a rotation (D_l of the real Y_lm, fitted from rotated points),
    and by an inversion changed by (-1)^(l1 + l2 + l3) (pseudoscalars for odd sums)."""
    rng = np.random.default_rng(11)
    u = rng.normal(size=(300, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    rotation = checks.random_rotation(3)
    y = real_ylm(8, u)
    for transform, parity in ((rotation, False), (-rotation, True)):
        moved = real_ylm(8, u @ transform.T)
        # Y_l(R u) = D_l Y_l(u): D_l^T by least squares over the points
        d = [np.linalg.lstsq(y[:, l * l:(l + 1) ** 2], moved[:, l * l:(l + 1) ** 2],
                             rcond=None)[0].T for l in range(9)]
        for l1 in range(9):
            for l2 in range(l1, 9):
                for l3 in range(l2, min(l1 + l2, 8) + 1):
                    t = coupling_tensor(l1, l2, l3)
                    assert np.linalg.norm(t) == pytest.approx(1.0, rel=1e-12)
                    sign = (-1) ** (l1 + l2 + l3) if parity else 1
                    turned = np.einsum("abc,ia,jb,kc->ijk", t, d[l1], d[l2], d[l3])
                    assert np.abs(turned - sign * t).max() <= 1e-10, (l1, l2, l3)


def test_bispectrum_parity(molecule_hco):
    d = small("bispectrum", parity="all")
    odd = np.array([(lab[2] + lab[5] + lab[8]) % 2 == 1 for lab in d.feature_labels])
    assert odd.any() and not odd.all()
    a = d.compute(molecule_hco).features
    mirror = molecule_hco.copy()
    mirror.positions[:, 2] *= -1
    b = d.compute(mirror).features
    assert np.abs(a[:, ~odd] - b[:, ~odd]).max() <= 1e-12 * np.abs(a).max()
    assert np.abs(a[:, odd] + b[:, odd]).max() <= 1e-12 * np.abs(a[:, odd]).max()
    assert np.abs(a[:, odd]).max() > 1e-6


def test_spherical_expansion_wigner_d(molecule_hco, checks):
    l_max, n_max = 4, 2
    d = small("spherical_expansion", l_max=l_max, n_max=n_max)
    c = d.compute(molecule_hco).features.reshape(len(molecule_hco), 3, n_max, (l_max + 1) ** 2)
    rng = np.random.default_rng(5)
    u = rng.normal(size=(200, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    R = checks.random_rotation(11)
    rot = molecule_hco.copy()
    rot.positions = molecule_hco.positions @ R.T
    cr = d.compute(rot).features.reshape(c.shape)
    y, yr = real_ylm(l_max, u), real_ylm(l_max, u @ R.T)
    for l in range(l_max + 1):
        s = slice(l * l, (l + 1) ** 2)
        # Y_l(R u) = D_l Y_l(u): the real Wigner D matrix of the rotation
        D = np.linalg.lstsq(y[:, s], yr[:, s], rcond=None)[0].T
        np.testing.assert_allclose(D @ D.T, np.eye(2 * l + 1), atol=1e-12)
        np.testing.assert_allclose(cr[..., s], c[..., s] @ D.T, atol=1e-12 * np.abs(c).max())


def pairs_of(path):
    frames = read(path, ":")
    by_pair = {}
    for f in frames:
        by_pair.setdefault(f.info["pair"], []).append(f)
    return list(by_pair.values())


def relative(a, b):
    return np.abs(a - b).max() / np.abs(a).max()


def test_three_body_degenerate_pairs():
    ps = atomdesc.descriptor("soap", species=["H", "C"], r_cut=3.0, n_max=4, l_max=4, sigma=0.3)
    bs = atomdesc.descriptor("bispectrum", species=["H", "C"], r_cut=3.0, n_max=3, l_max=4, sigma=0.3)
    for plus, minus in pairs_of(SHARED / "degenerate_3body_pairs.xyz"):
        assert relative(ps.compute(plus, centers=[0]).features,
                        ps.compute(minus, centers=[0]).features) <= 1e-12
        assert relative(bs.compute(plus, centers=[0]).features,
                        bs.compute(minus, centers=[0]).features) >= 1e-3


def test_four_body_degenerate_pairs():
    ps = atomdesc.descriptor("soap", species=["H", "B", "C", "O"], r_cut=3.0, n_max=3, l_max=4, sigma=0.3)
    bs = atomdesc.descriptor("bispectrum", species=["H", "B", "C", "O"], r_cut=3.0, n_max=2, l_max=4,
                             sigma=0.3, compression="mu2")
    for plus, minus in pairs_of(SHARED / "degenerate_4body_pairs.xyz"):
        assert relative(ps.compute(plus, centers=[0]).features,
                        ps.compute(minus, centers=[0]).features) <= 1e-11
        assert relative(bs.compute(plus, centers=[0]).features,
                        bs.compute(minus, centers=[0]).features) <= 1e-11


@pytest.mark.parametrize("family", FAMILIES)
def test_supercell(family):
    si = bulk("Si", "diamond", a=5.43)
    si.positions += np.random.default_rng(2).normal(scale=0.05, size=si.positions.shape)
    d = atomdesc.descriptor(family, species=["Si"], r_cut=4.0, n_max=3, l_max=3, sigma=0.4)
    a = d.compute(si, strain_gradients=True)
    big = si * (2, 1, 2)
    b = d.compute(big, centers=list(range(len(si))), strain_gradients=True)
    assert relative(a.features, b.features) <= 1e-12
    assert relative(a.strain_gradients, b.strain_gradients) <= 1e-11


@pytest.mark.parametrize("family", FAMILIES)
def test_threads_identical(family):
    si = bulk("Si", "diamond", a=5.43) * (2, 2, 2)
    si.positions += np.random.default_rng(4).normal(scale=0.05, size=si.positions.shape)
    d = atomdesc.descriptor(family, species=["Si"], r_cut=4.0, n_max=3, l_max=3, sigma=0.4)
    one = d.compute(si, gradients=True, strain_gradients=True, n_threads=1)
    two = d.compute(si, gradients=True, strain_gradients=True, n_threads=2)
    assert np.array_equal(one.features, two.features)
    assert np.array_equal(one.gradient_values, two.gradient_values)
    assert np.array_equal(one.strain_gradients, two.strain_gradients)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("species", [["H", "C", "O"], ["H", "C", "N", "O", "F", "S", "Cl"]],
                         ids=["dense", "few_channels"])
@pytest.mark.parametrize("average", ["off", "inner", "outer"])
def test_features_same_bits_with_derivatives(family, species, average, molecule_hco):
    """Features do not depend on whether derivatives are asked for (the bispectrum forms
    its features from the adjoints in both cases)."""
    d = small(family, species=species, average=average)
    alone = d.compute(molecule_hco).features
    with_derivatives = d.compute(molecule_hco, gradients=True, strain_gradients=True).features
    assert np.array_equal(alone, with_derivatives)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("system", ["molecule", "periodic"])
@pytest.mark.parametrize("sparse", [False, True])
def test_strain_alone_equals_strain_with_gradients(family, system, sparse, molecule_hco,
                                                   periodic_hco, monkeypatch):
    """The kernels sum the strain derivative alongside the gradients; asked for alone
    (no gradient slots), they must give the same numbers."""
    atoms = {"molecule": molecule_hco, "periodic": periodic_hco}[system]
    monkeypatch.setattr(soap_plugin._DensityExpansion, "_few_channels_around",
                        lambda *a: sparse)
    d = small(family, species=MANY_SPECIES, r_cut=3.0)
    alone = d.compute(atoms, strain_gradients=True)
    both = d.compute(atoms, gradients=True, strain_gradients=True)
    assert alone.gradient_values is None
    assert np.abs(both.strain_gradients).max() > 0
    np.testing.assert_array_equal(alone.features, both.features)
    np.testing.assert_array_equal(alone.strain_gradients, both.strain_gradients)


@pytest.mark.parametrize("family", FAMILIES)
def test_molecules_of_a_list_are_computed_together_bit_identically(family):
    from ase.build import molecule

    structures = [molecule(name) for name in ("CH4", "CH3CH2OH", "H2O", "C6H6")]
    for k, atoms in enumerate(structures):
        atoms.rattle(0.02, seed=6 + k)
    structures[2].positions += 500.0  # far from the origin: no effect
    d = atomdesc.descriptor(family, species=["H", "C", "O"], r_cut=4.0, n_max=4, l_max=4,
                            sigma=0.4)
    results = d.compute(structures, gradients=True, strain_gradients=True)
    for atoms, res in zip(structures, results):
        single = d.compute(atoms, gradients=True, strain_gradients=True)
        np.testing.assert_array_equal(res.features, single.features)
        np.testing.assert_array_equal(res.gradient_pairs, single.gradient_pairs)
        np.testing.assert_array_equal(res.gradient_values, single.gradient_values)
        np.testing.assert_array_equal(res.strain_gradients, single.strain_gradients)


@pytest.mark.parametrize("family", FAMILIES)
def test_small_cells_of_a_list_are_computed_together_bit_identically(family, monkeypatch):
    from ase.build import bulk, molecule

    cells = [bulk("Si", "diamond", a=5.43, cubic=True), bulk("C", "diamond", 3.57),
             bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2), molecule("CH4"),
             bulk("SiC", "zincblende", 4.36, orthorhombic=True)]
    cells[3].pbc = False
    for k, atoms in enumerate(cells):
        atoms.rattle(0.03, seed=20 + k)
    d = atomdesc.descriptor(family, species=["H", "C", "Si"], r_cut=4.0, n_max=3, l_max=3,
                            sigma=0.4)
    monkeypatch.setattr(type(d), "batch_cell_atoms", 32)  # the 64-atom cell alone
    parts = d.compute_parts(cells, [0, 1], gradients=True, strain_gradients=True)
    assert [part.indices for part in parts] == [[3], [0, 1, 4], [2]]
    results = d.compute(cells, [0, 1], gradients=True, strain_gradients=True, n_threads=2)
    for atoms, res in zip(cells, results):
        single = d.compute(atoms, [0, 1], gradients=True, strain_gradients=True, n_threads=1)
        assert res.n_atoms == len(atoms)
        np.testing.assert_array_equal(res.centers, [0, 1])
        np.testing.assert_array_equal(res.features, single.features)
        np.testing.assert_array_equal(res.gradient_pairs, single.gradient_pairs)
        np.testing.assert_array_equal(res.gradient_values, single.gradient_values)
        np.testing.assert_array_equal(res.strain_gradients, single.strain_gradients)


def test_isolated_atom():
    d = small("soap")
    res = d.compute(Atoms("O", positions=[[0, 0, 0]]), gradients=True, strain_gradients=True)
    assert np.isfinite(res.features).all() and res.features.any()
    assert not res.gradient_values.any()


# ------------------------------------------------------------------ kernel outputs


def _filled_outputs(monkeypatch, value):
    """Make the SOAP kernels' uninitialised output buffers start as ``value``; returns the calls."""
    from atomdesc import kernel_inputs

    calls = []
    allocate = kernel_inputs.kernel_outputs

    def filled(shapes, zeroed, sparse=False, n_threads=1):
        arrays = allocate(shapes, zeroed, sparse, n_threads)
        calls.append(zeroed)
        if not zeroed:
            for a in arrays:
                a.fill(value)
        return arrays

    # per-centre kernels allocate through KernelNeighbours.outputs, the averaged one directly
    monkeypatch.setattr(kernel_inputs, "kernel_outputs", filled)
    monkeypatch.setattr(soap_plugin, "kernel_outputs", filled)
    return calls


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("average", ["off", "inner", "outer"])
@pytest.mark.parametrize("system", ["molecule", "periodic", "lone_atoms"])
def test_every_output_element_written(family, average, system, molecule_hco, periodic_hco,
                                      monkeypatch):
    """The kernels get np.empty buffers: every element must be written, none added to garbage."""
    atoms = {"molecule": molecule_hco, "periodic": periodic_hco,
             "lone_atoms": Atoms("OH", positions=[[0, 0, 0], [9, 0, 0]])}[system]
    # lone atoms have one channel of three around each: the kernel would write
    # only that one into zeroed outputs (tested below); here the path that writes all
    monkeypatch.setattr(soap_plugin._DensityExpansion, "_few_channels_around", lambda *a: False)
    d = small(family, average=average, compression="mu2" if average == "inner" else "off")
    options = [dict(), dict(gradients=True), dict(strain_gradients=True),
               dict(gradients=True, strain_gradients=True)]
    expected = [d.compute(atoms, **o) for o in options]
    calls = _filled_outputs(monkeypatch, np.nan)
    got = [d.compute(atoms, **o) for o in options]
    # the averaged power spectrum and bispectrum call a second kernel on the mean
    assert calls == [False] * (len(options) * (2 if average == "inner" and family != "spherical_expansion" else 1))
    for want, res, o in zip(expected, got, options):
        arrays = [(res.features, want.features)]
        if o.get("gradients"):
            arrays.append((res.gradient_values, want.gradient_values))
        if o.get("strain_gradients"):
            arrays.append((res.strain_gradients, want.strain_gradients))
        for a, b in arrays:
            assert a.size > 0
            assert not np.isnan(a).any()
            assert np.array_equal(a, b)


MANY_SPECIES = ["H", "Li", "B", "C", "N", "O", "F", "Si"]


@pytest.mark.parametrize("family, average", [("soap", "off"), ("spherical_expansion", "off"),
                                             ("bispectrum", "off"), ("bispectrum", "inner")])
@pytest.mark.parametrize("system", ["molecule", "periodic", "lone_atoms", "one_species"])
def test_few_channels_written_into_zeros(family, average, system, molecule_hco, periodic_hco,
                                         monkeypatch):
    """With many species and few around each centre, the expansion, power spectrum and
    bispectrum are written only where their one, two or three channels are present,
    into zeroed outputs: the same numbers as the path that writes every element. The
    averaged bispectrum takes its coefficients from the expansion kernel."""
    atoms = {"molecule": molecule_hco, "periodic": periodic_hco,
             "lone_atoms": Atoms("OHF", positions=[[0, 0, 0], [9, 0, 0], [0, 9, 0]]),
             "one_species": Atoms("H2", positions=[[0, 0, 0], [0.8, 0, 0]])}[system]
    d = small(family, species=MANY_SPECIES, r_cut=3.0, average=average)
    options = [dict(), dict(gradients=True, strain_gradients=True)]
    calls = _filled_outputs(monkeypatch, np.nan)
    automatic = [d.compute(atoms, **o) for o in options]
    # three of eight species at most: each per-centre kernel call is sparse (the
    # averaged bispectrum's invariants of the mean are a second, dense call)
    assert calls.count(True) == len(options)
    forced = {}
    for sparse in (True, False):
        monkeypatch.setattr(soap_plugin._DensityExpansion, "_few_channels_around",
                            lambda *a, sparse=sparse: sparse)
        forced[sparse] = [d.compute(atoms, **o) for o in options]
    for a, b, c in zip(automatic, forced[True], forced[False]):
        for name in ("features", "gradient_values", "strain_gradients"):
            x, y, z = getattr(a, name), getattr(b, name), getattr(c, name)
            if z is None:
                continue
            assert np.array_equal(x, z) and np.array_equal(y, z)
    assert np.abs(automatic[0].features).max() > 0


def test_which_power_spectra_are_written_into_zeros(molecule_hco, periodic_hco):
    """The sparse path is for descriptors of many species around few of them only."""
    from atomdesc.kernel_inputs import KernelNeighbours
    from atomdesc.system import System

    def few(d, atoms, kind=1):  # kind 0, 1, 2: channels, pairs, triples
        system = System.from_atoms(atoms)
        nb = KernelNeighbours.build(system, d.r_max, np.arange(len(atoms)), d.species, False)
        return d._few_channels_around(nb, kind)

    assert not few(small("soap"), molecule_hco)  # H, C, O around every atom
    assert not few(small("soap", species=["H", "C", "O", "N"]), periodic_hco)  # 6 of 10 pairs
    assert few(small("soap", species=MANY_SPECIES), molecule_hco)  # 6 of 36 pairs
    assert not few(small("soap", species=MANY_SPECIES, compression="mu2"), molecule_hco)

    expansion = "spherical_expansion"
    assert not few(small(expansion, species=["H", "C", "O", "N"]), molecule_hco, 0)  # 3 of 4
    assert few(small(expansion, species=["H", "C", "O", "N", "F", "Si"]), molecule_hco, 0)
    assert few(small(expansion, species=MANY_SPECIES), periodic_hco, 0)  # 3 of 8

    assert not few(small("bispectrum"), molecule_hco, 2)  # H, C, O of H, C, O
    assert few(small("bispectrum", species=MANY_SPECIES), molecule_hco, 2)  # 10 of 120


@pytest.mark.parametrize("family", ["soap", "spherical_expansion", "bispectrum"])
def test_few_channels_everywhere_written_into_zeros(family, molecule_hco, monkeypatch):
    """The zeroed path where every channel is present (nothing skipped) is exact too."""
    d = small(family)
    want = d.compute(molecule_hco, gradients=True, strain_gradients=True)
    monkeypatch.setattr(soap_plugin._DensityExpansion, "_few_channels_around", lambda *a: True)
    got = d.compute(molecule_hco, gradients=True, strain_gradients=True)
    for name in ("features", "gradient_values", "strain_gradients"):
        assert np.array_equal(getattr(got, name), getattr(want, name))


@pytest.mark.parametrize("family", ["soap", "spherical_expansion", "bispectrum"])
@pytest.mark.parametrize("system", ["molecule", "periodic"])
def test_derivatives_few_channels(family, system, molecule_hco, periodic_hco, checks):
    d = small(family, species=MANY_SPECIES, r_cut=3.0)
    atoms = {"molecule": molecule_hco, "periodic": periodic_hco}[system]
    grad_err, strain_err = finite_difference_errors(d, atoms, checks)
    assert grad_err <= 1e-6
    assert strain_err <= 1e-6


# ------------------------------------------------------------------ other codes


def _reference():
    ref = np.load(DATA / "soap_references.npz")
    return ref, json.loads(str(ref["meta"]))["cases"]


def _structure(ref, name):
    return Atoms(numbers=ref[f"structure_{name}_numbers"], positions=ref[f"structure_{name}_positions"],
                 cell=ref[f"structure_{name}_cell"], pbc=ref[f"structure_{name}_pbc"])


_REF, _CASES = _reference()
_SLOW_KEYS = {"dscribe_13", "featomic_1", "featomic_2"}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c["key"], marks=[pytest.mark.slow] if c["key"] in _SLOW_KEYS else [])
     for c in _CASES],
)
def test_reference_numbers(case):
    d = atomdesc.descriptor("soap", **case["hypers"])
    centers = case.get("centers")  # points, where DScribe was given them
    got = d.compute(_structure(_REF, case["structure"]), centers=centers).features
    want = _REF[case["key"]]
    if case["key"].startswith("featomic"):
        # featomic's columns: (Z1 <= Z2, l, n1, n2) for every n1, n2
        from ase.data import atomic_numbers

        zs = sorted(atomic_numbers[s] for s in d.species)
        cols = [(z1, z2, l, n1, n2) for i, z1 in enumerate(zs) for z2 in zs[i:]
                for l in range(d.l_max + 1) for n1 in range(d.n_max) for n2 in range(d.n_max)]
        index = {c: k for k, c in enumerate(cols)}
        order = [index[(atomic_numbers[a1], atomic_numbers[a2], l, n1, n2)]
                 for a1, n1, a2, n2, l in d.feature_labels]
        assert sorted(order) == list(range(len(cols)))
        want = want[:, order]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-8 * np.abs(want).max()
