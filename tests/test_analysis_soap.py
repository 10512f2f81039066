"""Expectations of SCIENCE.md §6 for the SOAP families (radial spectrum ν = 1, power spectrum
ν = 2, bispectrum ν = 3).

Settings: species H, C; r_cut 3.5 Å; σ 0.5 Å; DScribe's GTO basis; raw features; rank at
rtol 1e-8 (σ ≤ 1e-8 σ_max counts as zero). The numbers measured with these settings are in
docs/singular-points.md.
"""

from __future__ import annotations

import numpy as np
import pytest

import atomdesc
from atomdesc import analysis as an


def soap(n_max=6, l_max=6, **kw):
    return atomdesc.descriptor("soap", species=["H", "C"], r_cut=3.5, n_max=n_max, l_max=l_max,
                               **kw)


def bispectrum(n_max=3, l_max=3, **kw):
    return atomdesc.descriptor("bispectrum", species=["H", "C"], r_cut=3.5, n_max=n_max,
                               l_max=l_max, **kw)


@pytest.fixture(scope="module")
def ps():
    return soap()


@pytest.fixture(scope="module")
def bs():
    return bispectrum()


@pytest.fixture(scope="module")
def bs_all():
    """Bispectrum with the odd-parity (pseudoscalar) invariants: SO(3), not O(3), invariant."""
    return bispectrum(parity="all")


@pytest.fixture(scope="module")
def bundled():
    return an.singular_environments()


def rel(d, a, b, center=0):
    x = d.compute(a, centers=[center]).features
    y = d.compute(b, centers=[center]).features
    return np.linalg.norm(x - y) / np.linalg.norm(x)


def relative_sigmas(d, atoms):
    s = an.sensitivity(d, atoms, 0)
    return s, s.singular_values / s.sigma_max


@pytest.mark.parametrize("name", ["ps", "bs", "bs_all"])
def test_symmetric_environment_ranks(request, bundled, name):
    """T12-T14: T_d rank 1, collinear 2 of 4 for every invariant family; planar 7 of 9 for
    O(3)-invariant features, 9 of 9 with pseudoscalars. The null σ are round-off."""
    d = request.getfixturevalue(name)
    o3 = name != "bs_all"
    assert an.checks.invariance(d, an.random_ch4(0))["o3_invariant"] == o3
    for td in (an.tetrahedron(), bundled["CH4_Td"]):
        s, r = relative_sigmas(d, td)
        assert s.rank == 1 and s.n_dof == 9 and r[1] <= 1e-14
    for col in (an.collinear(), bundled["collinear2"]):
        s, r = relative_sigmas(d, col)
        assert s.n_dof == 4 and s.rank == 2 and r[2] <= 1e-14
    assert an.sensitivity(d, an.bent(), 0).rank == 3
    for pl in (an.planar(), an.planar(seed=3), bundled["planar4"]):
        s, r = relative_sigmas(d, pl)
        if o3:
            assert s.rank == 7 and r[7] <= 1e-14 and r[6] > 1e-3
        else:
            assert s.rank == 9 and r[8] > 1e-4  # weak (7.5e-4 at planar(seed=3)) but not null


def test_planar_pseudoscalars_classified(bs, bs_all, bundled):
    """The classifier finds the mirror plane only for O(3) features: 2 symmetry-forced null
    directions (the out-of-plane bends) for the even bispectrum, none with pseudoscalars."""
    even = an.classify(bs, bundled["planar4"], 0)
    assert even.symmetry.improper and even.symmetry.rank_bound == 7
    assert even.counts == {"symmetry": 2, "incompleteness": 0, "truncation": 0, "unexplained": 0}
    odd = an.classify(bs_all, bundled["planar4"], 0)
    assert not odd.symmetry.improper and odd.symmetry.rank_bound == 9
    assert not odd.singular


def test_radial_spectrum_rank_four():
    """T16, ν = 1: the radial spectrum (the l = 0 coefficients c_n00 of the spherical
    expansion, the only rotation-invariant part of it) sees the 4 distances only: rank 4 of 9.
    soap with l_max = 0 (products c_n00 c_n'00, a function of the radial spectrum) too."""
    for d in (atomdesc.descriptor("spherical_expansion", species=["H", "C"], r_cut=3.5,
                                  n_max=6, l_max=0), soap(6, 0)):
        for seed in range(3):
            s, r = relative_sigmas(d, an.random_ch4(seed))
            assert s.rank == 4 and r[3] > 1e-5 and r[4] <= 1e-14


@pytest.mark.parametrize("name", ["ps", "bs", "bs_all"])
def test_random_ch4_full_rank(request, bundled, name):
    """T16: ν = 2 and ν = 3 with an adequate basis have rank 9 at a random CH4."""
    d = request.getfixturevalue(name)
    for atoms in [an.random_ch4(seed) for seed in range(4)] + [bundled["random_CH4"]]:
        s, r = relative_sigmas(d, atoms)
        assert s.rank == 9 and r[-1] > 1e-3


@pytest.mark.parametrize("name", ["ps", "bs"])
def test_full_jacobian_trivial_modes(request, name):
    """T19: the full (centre-moving) Jacobian has exactly 6 null singular values at a generic
    environment (3 translations + 3 rotations), 5 for a collinear one; nothing projected."""
    d = request.getfixturevalue(name)
    for seed in range(2):
        jac = an.jacobian(d, an.random_ch4(seed), 0, mode="full")
        s = np.linalg.svd(jac.matrix, compute_uv=False)
        assert jac.shape[1] == 15
        assert np.count_nonzero(s <= 1e-12 * s[0]) == 6 and s[8] > 1e-3 * s[0]
        sens = an.sensitivity(None, jac=jac)
        assert sens.n_trivial == 6 and sens.rank == 9
        # the rigid modes themselves are null
        q = jac.trivial_modes()
        assert np.linalg.norm(jac.matrix @ q) <= 1e-12 * s[0]
    jac = an.jacobian(d, an.collinear(), 0, mode="full")
    s = np.linalg.svd(jac.matrix, compute_uv=False)
    s = np.pad(s, (0, max(0, 9 - len(s))))
    assert np.count_nonzero(s <= 1e-12 * s[0]) == 7  # 5 trivial + 2 symmetry-forced bends
    sens = an.sensitivity(None, jac=jac)
    assert sens.n_trivial == 5 and sens.n_dof == 4 and sens.rank == 2


def test_branch_point_soap_singular_bispectrum_not(ps, bs, bundled):
    """T15: one extra null direction (H4 along y) for soap at the X± branch point, none for
    the bispectrum; classified as incompleteness with the bispectrum as reference, and it does
    not go away with a larger basis (so it is not truncation)."""
    for sign in (1, -1):
        name = "xpm_branch_point_x+1.09" if sign > 0 else "xpm_branch_point_x-1.09"
        for atoms in (an.xpm_branch_point(sign), bundled[name]):
            s, r = relative_sigmas(ps, atoms)
            assert s.rank == 8 and r[-1] <= 1e-14 and r[-2] > 1e-4
            assert s.jacobian.response(s.jacobian.displacement(4, [0, 1, 0])) <= 1e-12
            b, rb = relative_sigmas(bs, atoms)
            assert b.rank == 9 and rb[-1] > 1e-3
        c = an.classify(ps, atoms, 0, reference=bs, larger=[soap(8, 8)])
        assert c.counts == {"symmetry": 0, "incompleteness": 1, "truncation": 0,
                            "unexplained": 0}
        assert c.directions[0].responses["larger[0]"] <= 1e-12
        assert c.directions[0].responses["reference"] > 1e-3
        # the null direction is H4 moving along y, with the rotation component removed
        h4y = s.jacobian.displacement(4, [0, 1, 0])
        assert abs(c.directions[0].vector.ravel() @ h4y) > 0.7
    # off the z = 0 circle the rank is full again
    assert an.sensitivity(ps, an.xpm_h4(np.pi / 2 - 0.2, 0.3), 0).rank == 9


def test_degenerate_pairs(ps, bs):
    """T10, T11: X± equal for soap (to round-off), different for the bispectrum; B± equal for
    both. The bispectrum difference of the X± pairs is 0.03-0.06 relative at σ = 0.5 Å."""
    for _, plus, minus in an.degenerate_pairs("3body"):
        assert rel(ps, plus, minus) <= 1e-12
        assert rel(bs, plus, minus) > 1e-2
        # H-centred environments differ already at ν = 2
        assert rel(ps, plus, minus, center=1) + rel(ps, plus, minus, center=4) > 1e-2
    for d in (ps, bs):
        d4 = atomdesc.descriptor_from_hypers({**d.hypers, "species": ["H", "B", "C", "O"]})
        for _, plus, minus in an.degenerate_pairs("4body"):
            assert rel(d4, plus, minus) <= 1e-11


def test_truncation_small_basis(ps):
    """T17: soap with (n_max, l_max) = (2, 2) has rank < 9 at a random CH4 although it has
    30 features; the scan finds it and the classifier calls it truncation."""
    atoms = an.random_ch4(1)
    small = soap(2, 2)
    assert small.n_features >= 9
    for seed in range(4):
        assert an.sensitivity(small, an.random_ch4(seed), 0).rank < 9
    scan = an.truncation_scan("soap", {"n_max": [1, 2, 4, 6], "l_max": [1, 2, 4, 6]}, atoms,
                              base={"species": ["H", "C"], "r_cut": 3.5})
    ranks = scan.grid("rank")
    assert ranks[1, 1] < 9 and ranks[-1, -1] == 9
    assert np.all(ranks[2:, 1:] == 9)
    c = an.classify(small, atoms, 0, larger=[soap(4, 4), ps])
    assert c.counts["truncation"] == 9 - c.sensitivity.rank >= 1
    assert c.counts["symmetry"] == c.counts["unexplained"] == 0


def test_tetrahedron_is_symmetry(ps, bs):
    """At T_d all 8 null directions are forced by the point group, for ν = 2 and ν = 3."""
    for d, ref in ((ps, bs), (bs, None)):
        c = an.classify(d, an.tetrahedron(), 0, reference=ref)
        assert c.symmetry.n_operations == 24 and c.symmetry.rank_bound == 1
        assert c.counts == {"symmetry": 8, "incompleteness": 0, "truncation": 0,
                            "unexplained": 0}


@pytest.mark.slow
def test_audit_soap(tmp_path):
    # l_max ≥ 5: on the X± sphere (all C-H distances equal) l_max = 4 is truncation-singular;
    # no reference given: the audit takes a bispectrum with soap's hyper-parameters
    report = an.audit(soap(4, 6), tmp_path, quick=True)
    sp = report.data["singular_points"]
    assert sp["tetrahedron"]["rank"] == 1 and sp["random_CH4"]["rank"] == 9
    for sign in "+-":
        assert sp[f"xpm_branch_point{sign}"]["counts"]["incompleteness"] == 1
        assert sp[f"xpm_branch_point{sign}"]["counts"]["unexplained"] == 0
    assert report.data["reference"]["family"] == "bispectrum"
    assert "incompleteness reference: bispectrum" in report.text
    assert ("X± branch points: + 1 null (incompleteness 1), - 1 null (incompleteness 1)"
            in report.data["criteria"]["uniqueness"]["note"])


def test_audit_default_reference():
    from atomdesc.analysis.audit import default_reference

    ref, info = default_reference(soap(4, 6, sigma=0.3))
    assert ref.name == "bispectrum" and info["default"]
    assert (ref.hypers["n_max"], ref.hypers["l_max"], ref.hypers["sigma"]) == (4, 6, 0.3)
    assert ref.hypers["r_cut"] == 3.5 and ref.hypers["species"] == ["H", "C"]
    ref, info = default_reference(soap(8, 8))
    assert (ref.hypers["n_max"], ref.hypers["l_max"]) == (6, 6)
    assert "n_max 8 -> 6" in info["note"] and "l_max 8 -> 6" in info["note"]
    acsf = atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0, g2_params=[[1.0, 0.0]])
    assert default_reference(acsf) is None
    # the default reference explains the branch point's null direction as incompleteness
    ps = soap(3, 5)
    ref, _ = default_reference(ps)
    c = an.classify(ps, an.xpm_branch_point(-1), 0, reference=ref)
    assert c.counts == {"symmetry": 0, "incompleteness": 1, "truncation": 0, "unexplained": 0}


def test_audit_branch_point_note_is_per_point():
    from atomdesc.analysis.audit import branch_point_note

    counts = {"symmetry": 0, "incompleteness": 1, "truncation": 0, "unexplained": 0}
    branch = {"+": {"n_dof": 9, "rank": 8, "counts": counts},
              "-": {"n_dof": 9, "rank": 9, "counts": dict.fromkeys(counts, 0)}}
    assert branch_point_note(branch) == "+ 1 null (incompleteness 1), - 0 null"


def test_equal_distances_need_l_max_5():
    """On the PRL X± sphere all four C-H distances are 1.09 Å: c_nlm = R_nl(r) Σ_j Y_lm(r̂_j), so
    the angles enter soap only through Σ_jk P_l(cos θ_jk), l = 1..l_max. The 5 angular
    directions need l_max ≥ 5: with l_max = 4 the rank is 8 anywhere on the sphere, whatever
    n_max (a truncation singular point), 9 once one distance differs or l_max = 5."""
    atoms = an.xpm_h4(1.0, 0.5)
    for n_max in (4, 8):
        assert an.sensitivity(soap(n_max, 4), atoms, 0).rank == 8
    assert an.sensitivity(soap(4, 5), atoms, 0).rank == 9
    stretched = atoms.copy()
    stretched.positions[4] *= 1.2
    assert an.sensitivity(soap(4, 4), stretched, 0).rank == 9
    c = an.classify(soap(4, 4), atoms, 0, larger=[soap(4, 6)])
    assert c.counts == {"symmetry": 0, "incompleteness": 0, "truncation": 1, "unexplained": 0}
