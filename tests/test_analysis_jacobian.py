"""Jacobian, sensitivity and ranks at the environments of SCIENCE.md §4-6 (T12-T19), with ACSF."""

from __future__ import annotations

import numpy as np
import pytest

import atomdesc
from atomdesc import analysis as an

@pytest.fixture(scope="module")
def radial(acsf_g2_g4):
    """G2 only: the radial spectrum (ν = 1)."""
    G2, _ = acsf_g2_g4
    return atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0, g2_params=G2)


@pytest.fixture(scope="module")
def bundled():
    return an.singular_environments()


def test_jacobian_matches_finite_differences(acsf):
    """T18: analytic Jacobian against 4th-order central differences (h = 1e-3 Å)."""
    atoms = an.random_ch4(5)
    jac = an.jacobian(acsf, atoms, 0, mode="full")
    assert jac.matrix.shape == (acsf.n_features, 15)
    h = 1e-3
    fd = np.zeros_like(jac.matrix)
    for col, (k, x) in enumerate((k, x) for k in range(len(jac.atoms)) for x in range(3)):
        acc = 0.0
        for step, w in ((2, -1.0), (1, 8.0), (-1, -8.0), (-2, 1.0)):
            moved = atoms.copy()
            moved.positions[jac.atoms[k], x] += step * h
            acc = acc + w * acsf.compute(moved, centers=[0]).features[0]
        fd[:, col] = acc / (12 * h)
    assert np.abs(jac.matrix - fd).max() <= 1e-8 * np.abs(fd).max()


def test_full_jacobian_has_six_trivial_null_directions(acsf):
    """T19: translations and rotations are exactly null in the full Jacobian."""
    atoms = an.random_ch4(2)
    jac = an.jacobian(acsf, atoms, 0, mode="full")
    s = np.linalg.svd(jac.matrix, compute_uv=False)
    assert np.count_nonzero(s > 1e-12 * s[0]) == 9
    assert jac.trivial_modes().shape[1] == 6
    assert np.abs(jac.matrix @ jac.trivial_modes()).max() <= 1e-12 * s[0]
    sens = an.sensitivity(None, jac=jac)
    assert (sens.n_trivial, sens.n_dof, sens.rank) == (6, 9, 9)


def test_collinear_full_jacobian_has_five_trivial_modes(acsf):
    sens = an.sensitivity(acsf, an.collinear(), 0, mode="full")
    assert sens.n_trivial == 5
    assert sens.n_dof == 4 and sens.rank == 2  # 3 atoms: 9 - 5 = 4 directions


@pytest.mark.parametrize("mode", ["centered", "full"])
def test_tetrahedron_rank_one(acsf, radial, bundled, mode):
    """T12: T_d CH4 has exactly one non-zero σ for any invariant descriptor."""
    for d in (acsf, radial):
        for atoms in (an.tetrahedron(), an.tetrahedron(r=1.3), bundled["CH4_Td"]):
            s = an.sensitivity(d, atoms, 0, mode=mode)
            assert s.n_dof == 9
            assert s.rank == 1
            assert np.all(s.singular_values[1:] <= 1e-10 * s.sigma_max)


def test_planar_rank_seven_of_nine(acsf, bundled):
    """T13: a planar 4-neighbour environment, O(3)-invariant features: 2 null of 9."""
    for atoms in [bundled["planar4"]] + [an.planar(seed=s) for s in range(4)]:
        s = an.sensitivity(acsf, atoms, 0)
        assert (s.n_dof, s.rank) == (9, 7)
        # the null directions move the neighbours out of the plane
        assert np.abs(s.null_vectors[..., :2]).max() < 1e-8


def test_planar_n_neighbours(acsf):
    for n in (3, 5):
        s = an.sensitivity(acsf, an.planar(n=n, seed=1), 0)
        assert (s.n_dof, s.rank) == (3 * n - 3, 2 * n - 1)


def test_collinear_rank_two_of_four(acsf, bundled):
    """T14: collinear 2-neighbour environment: bends are null; a bent one has full rank 3."""
    for atoms in (bundled["collinear2"], an.collinear(0.9, 1.6)):
        s = an.sensitivity(acsf, atoms, 0)
        assert (s.n_trivial, s.n_dof, s.rank) == (2, 4, 2)
        assert np.abs(s.null_vectors[..., 2]).max() < 1e-8  # perpendicular to the axis
    s = an.sensitivity(acsf, an.bent(), 0)
    assert (s.n_dof, s.rank) == (3, 3)


def test_random_ch4_full_rank_and_radial_rank_four(acsf, radial, bundled):
    """T16: generic CH4: rank 9 for ACSF with angular terms, 4 for the radial spectrum."""
    for atoms in [bundled["random_CH4"]] + [an.random_ch4(s) for s in range(5)]:
        assert an.sensitivity(acsf, atoms, 0).rank == 9
        assert an.sensitivity(radial, atoms, 0).rank == 4


@pytest.mark.parametrize("sign", [1, -1])
def test_branch_point_extra_null_direction_along_h4_y(acsf, bundled, sign):
    """T15: at the X± branch point ACSF loses exactly one rank; J e_y(H4) = 0."""
    name = "xpm_branch_point_x+1.09" if sign > 0 else "xpm_branch_point_x-1.09"
    for atoms in (bundled[name], an.xpm_branch_point(sign)):
        s = an.sensitivity(acsf, atoms, 0)
        assert (s.n_dof, s.rank) == (9, 8)
        assert s.singular_values[-1] <= 1e-12 * s.sigma_max
        jac = s.jacobian
        assert jac.response(jac.displacement(4, [0, 1, 0])) <= 1e-10
        # the null vector is e_y(H4) with its rotational part removed
        ey = jac.displacement(4, [0, 1, 0])
        q = jac.trivial_modes()
        expected = ey - q @ (q.T @ ey)
        expected /= np.linalg.norm(expected)
        assert abs(s.null_vectors[0].ravel() @ expected) == pytest.approx(1.0, abs=1e-8)
    # away from the branch point (H4 off the x axis) the rank is full again
    assert an.sensitivity(acsf, an.xpm_h4(np.pi / 2, 0.4), 0).rank == 9


def test_xpm_pairs_equal_for_acsf(acsf):
    """T10: X± pairs have identical ACSF (ν ≤ 2) features to 1e-12 relative."""
    pairs = [(p, m) for _, p, m in an.degenerate_pairs("3body")]
    pairs += [an.xpm_random(s) for s in range(3)]
    for plus, minus in pairs:
        a = acsf.compute(plus, centers=[0]).features
        b = acsf.compute(minus, centers=[0]).features
        assert np.linalg.norm(a - b) <= 1e-12 * np.linalg.norm(a)
        # the members are distinct structures: the H-centred environments differ
        ha = acsf.compute(plus, centers=[4]).features
        hb = acsf.compute(minus, centers=[4]).features
        assert np.linalg.norm(ha - hb) > 1e-3 * np.linalg.norm(ha)


def test_metric_changes_sigma_not_null_directions(acsf):
    """A8: the null directions are metric independent, the σ's are not."""
    atoms = an.xpm_branch_point(1)
    frames = [an.random_ch4(s) for s in range(20)]
    scale = an.feature_scale(acsf, frames)
    results = [an.sensitivity(acsf, atoms, 0, metric=m) for m in ("raw", "unit", scale)]
    assert [r.metric for r in results] == ["raw", "unit", "scaled"]
    assert all(r.rank == 8 for r in results)
    v0 = results[0].null_vectors[0].ravel()
    for r in results[1:]:
        assert abs(r.null_vectors[0].ravel() @ v0) == pytest.approx(1.0, abs=1e-6)
    assert results[0].condition_number != pytest.approx(results[2].condition_number, rel=1e-3)


def test_sensitivity_to_dict_is_json(acsf):
    import json

    s = an.sensitivity(acsf, an.tetrahedron(), 0)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["rank"] == 1 and d["n_dof"] == 9 and len(d["null_vectors"]) == 8
    assert "rank 1" in s.summary()


def test_moving_atoms_default_to_the_environment(acsf):
    """Atoms beyond the cutoff do not move (they would add trivial null columns)."""
    atoms = an.random_ch4(0)
    far = atoms.copy()
    far.append("H")
    far.positions[-1] = [9.0, 0, 0]
    jac = an.jacobian(acsf, far, 0)
    assert sorted(jac.atoms.tolist()) == [1, 2, 3, 4]


def test_periodic_structure_only_translations_removed(acsf, acsf_g2_g4):
    from ase.build import bulk

    G2, G4 = acsf_g2_g4
    atoms = bulk("C", "diamond", a=3.57) * (2, 2, 2)
    atoms.rattle(0.05, seed=1)
    d = atomdesc.descriptor("acsf", species=["C"], r_cut=3.0, g2_params=G2, g4_params=G4)
    s = an.sensitivity(d, atoms, 0, mode="full")
    assert s.n_trivial == 3
    assert s.rank == s.n_dof or s.rank <= min(d.n_features, s.n_dof)


def test_rejects_bad_input(acsf):
    with pytest.raises(ValueError, match="mode"):
        an.jacobian(acsf, an.tetrahedron(), 0, mode="sideways")
    with pytest.raises(ValueError, match="center"):
        an.jacobian(acsf, an.tetrahedron(), 7)
    with pytest.raises(ValueError, match="metric"):
        an.sensitivity(acsf, an.tetrahedron(), 0, metric="bogus")
