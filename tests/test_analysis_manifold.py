"""Quasi-constant manifold following (SCIENCE.md §4.3 A7) with `soap` near the X± branch point."""

from __future__ import annotations

import numpy as np
import pytest

import atomdesc
from atomdesc import analysis as an


@pytest.fixture(scope="module")
def ps():
    return atomdesc.descriptor("soap", species=["H", "C"], r_cut=3.5, n_max=6, l_max=6)


def test_e4_of_regular_tetrahedron():
    # the 4 face normals of a regular tetrahedron meet at cos = ±1/3: E4 = 6 / 9
    assert an.plane_overlap_e4(an.tetrahedron()) == pytest.approx(2 / 3, rel=1e-12)
    atoms = an.random_ch4(3)
    rotated = atoms.copy()
    rotated.rotate(37, "x", center=(0, 0, 0))
    assert an.plane_overlap_e4(rotated) == pytest.approx(an.plane_overlap_e4(atoms), rel=1e-12)


def test_follow_null_direction_near_branch_point(ps):
    start = an.xpm_h4(np.pi / 2, 0.01)  # H4 0.6° from the X+ branch point
    path = an.follow_null_direction(ps, start, 0, step=1e-3, n_steps=40, save_every=10,
                                    observables={"E4": an.plane_overlap_e4})
    assert path.steps.tolist() == [0, 10, 20, 30, 40]
    assert len(path.frames) == 5 and path.observables["E4"].shape == (5,)
    # σ_min stays small but non-zero
    assert np.all(path.relative_sigma_min > 0)
    assert np.all(path.relative_sigma_min < 3e-3)
    # the sign is kept continuous: the atoms move away steadily, not back and forth
    assert path.displacement[-1] > 0.9 * path.path_length[-1]
    assert np.all(np.diff(path.displacement) > 0)
    # the features barely change while the atoms move ~0.04 Å ...
    assert path.feature_change[-1] < 1e-4
    # ... while the same displacement along the stiffest direction changes them by ~5 %
    s = an.sensitivity(ps, start, 0)
    stiff = start.copy()
    stiff.positions[1:] += path.displacement[-1] * s.right_vectors[0]
    x0, x1 = (ps.compute(a, centers=[0]).features[0] for a in (start, stiff))
    assert np.linalg.norm(x1 - x0) / np.linalg.norm(x0) > 100 * path.feature_change[-1]
    # the 4-body target moves along the path
    assert abs(path.observables["E4"][-1] - path.observables["E4"][0]) > 1e-2
    d = path.to_dict()
    assert d["steps"] == [0, 10, 20, 30, 40] and "E4" in d["observables"]
    assert "σ_min/σ_max" in path.summary()


def test_follow_null_direction_from_the_branch_point_respects_direction(ps):
    # at the branch point the null vector is H4 along y; `direction` picks the branch
    start = an.xpm_branch_point(+1)
    y = np.zeros((4, 3))
    y[3, 1] = 1.0
    for sign in (1, -1):
        path = an.follow_null_direction(ps, start, 0, step=1e-3, n_steps=5, save_every=5,
                                        direction=sign * y, keep_frames=True)
        assert path.relative_sigma_min[0] < 1e-12
        assert sign * (path.frames[-1].positions[4, 1] - start.positions[4, 1]) > 3e-3
