"""Invariance, smoothness, uniqueness, cost, size and generality checks; the audit and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import atomdesc
from atomdesc import analysis as an
from atomdesc.analysis import checks
from atomdesc.descriptor import Descriptor
from atomdesc.result import DescriptorResult

G2 = [[eta, 0.0] for eta in (0.1, 0.5, 1.0, 3.0)]
G4 = [[eta, zeta, lam] for eta in (0.01, 0.3) for zeta in (1, 4) for lam in (1, -1)]


@pytest.fixture(scope="module")
def acsf():
    return atomdesc.descriptor("acsf", species=["H", "C", "O"], r_cut=3.5, g2_params=G2,
                               g4_params=G4)


def test_invariance(acsf):
    r = checks.invariance(acsf)
    for key in ("rotation", "reflection", "translation", "permutation"):
        assert r[key] <= 1e-12, key
    assert r["o3_invariant"] and r["so3_invariant"]


def test_smoothness_at_cutoff(acsf):
    r = checks.smoothness(acsf, n_points=11)
    assert r["r_cut"] == 3.5
    assert r["value_jump"] <= 1e-8 and r["derivative_at_cutoff"] <= 1e-4
    assert r["continuous"] and r["differentiable"]


def test_gradient_check(acsf):
    assert checks.gradient_check(acsf)["relative_error"] <= 1e-8


def test_uniqueness_degenerate_pairs(acsf):
    r = checks.uniqueness(acsf, n_random=1)
    assert r["3body"]["degenerate"] and r["3body"]["max"] <= 1e-12
    assert r["4body"]["degenerate"] and r["4body"]["max"] <= 1e-11
    assert "b_0" in r["4body"]["relative_difference"]


def test_bpm_generator_is_degenerate_for_acsf(acsf):
    plus, minus = an.bpm_random(3, center="C", ring="H", axial="O")
    a, b = (acsf.compute(x, centers=[0]).features for x in (plus, minus))
    assert np.linalg.norm(a - b) <= 1e-12 * np.linalg.norm(a)
    assert not np.allclose(plus.positions, minus.positions)


def test_cost_size_generality(acsf):
    c = checks.cost(acsf, repeat=1)
    assert c["n_features"] == acsf.n_features and c["features_us_per_atom"] > 0
    g = checks.generality(acsf)
    assert g["all_ok"], g
    f = checks.fixed_size(acsf)
    assert set(f["per_structure"].values()) == {acsf.n_features}
    assert f["finite"]


def test_isolated_atom_has_fixed_size(acsf):
    assert checks.fixed_size(acsf)["fixed"]


class PairGaussians(Descriptor):
    """A family atomdesc does not know (numpy only, ν = 1): Σ_j exp(-(r_ij - μ)²/2s²) f_c."""

    name = "pair_gaussians_test"
    feature_label_names = ("mu",)
    supports_strain_gradients = False

    def __init__(self, *, species, r_cut=3.0, mus=(0.8, 1.2, 1.6, 2.0)):
        self.species = list(species)
        self.r_cut = float(r_cut)
        self.mus = np.asarray(mus, dtype=float)

    @property
    def hypers(self):
        return {"family": self.name, "species": self.species, "r_cut": self.r_cut,
                "mus": self.mus.tolist()}

    @property
    def feature_labels(self):
        return tuple((float(m),) for m in self.mus)

    def compute_system(self, system, centers, *, gradients, strain_gradients, n_threads):
        pos = system.positions
        feats = np.zeros((len(centers), len(self.mus)))
        pairs, values = [], []
        for row, i in enumerate(centers):
            grad = np.zeros((len(pos), 3, len(self.mus)))
            for j in range(len(pos)):
                v = pos[j] - pos[i]
                r = np.linalg.norm(v)
                if j == i or r >= self.r_cut:
                    continue
                fc = 0.5 * (np.cos(np.pi * r / self.r_cut) + 1)
                dfc = -0.5 * np.pi / self.r_cut * np.sin(np.pi * r / self.r_cut)
                g = np.exp(-((r - self.mus) ** 2) / 0.18)
                feats[row] += g * fc
                dg = (g * (-(r - self.mus) / 0.09) * fc + g * dfc)[None, :] * (v / r)[:, None]
                grad[j] += dg
                grad[i] -= dg
            for a in range(len(pos)):
                if np.any(grad[a]):
                    pairs.append((row, a))
                    values.append(grad[a])
        return DescriptorResult(
            features=feats, centers=centers, n_atoms=len(pos), feature_labels=self.feature_labels,
            gradient_pairs=np.array(pairs, dtype=np.int64).reshape(-1, 2) if gradients else None,
            gradient_values=np.array(values).reshape(-1, 3, len(self.mus)) if gradients else None,
        )


def test_analysis_works_on_an_unregistered_family():
    d = PairGaussians(species=["H", "C"])
    assert an.sensitivity(d, an.random_ch4(0), 0).rank == 4  # radial only
    assert an.sensitivity(d, an.tetrahedron(), 0).rank == 1
    assert checks.gradient_check(d)["relative_error"] < 1e-8


def test_audit_of_a_third_party_family(tmp_path):
    d = PairGaussians(species=["H", "C"])
    report = an.audit(d, tmp_path, quick=True)
    crit = report.data["criteria"]
    # invariant on molecules, but it ignores periodic images: the audit catches it
    assert checks.invariance(d, an.random_ch4(0))["o3_invariant"]
    assert crit["invariance"]["verdict"] == "fail"
    assert crit["uniqueness"]["verdict"] == "fail"  # radial only: random CH4 rank 4 of 9
    assert report.data["singular_points"]["random_CH4"]["rank"] == 4
    json.loads((tmp_path / "report.json").read_text())


def test_audit_acsf_end_to_end(tmp_path):
    d = atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0, g2_params=G2, g4_params=G4)
    report = an.audit(d, tmp_path, quick=True)
    data = json.loads((tmp_path / "report.json").read_text())
    sp = data["singular_points"]
    assert sp["tetrahedron"]["rank"] == 1 and sp["planar"]["rank"] == 7
    assert sp["collinear"]["rank"] == 2 and sp["random_CH4"]["rank"] == 9
    assert sp["xpm_branch_point+"]["rank"] == 8
    assert data["criteria"]["invariance"]["verdict"] == "pass"
    assert data["truncation"]["names"] == ["g2_params", "g4_params"]
    assert "invariance" in report.text and (tmp_path / "report.txt").exists()
    for name in ("singular_values", "xpm_sigma_min_map", "truncation_scan",
                 "sigma_min_distribution", "cutoff_smoothness"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_cli_sensitivity_and_audit(tmp_path, capsys):
    from atomdesc.cli import main

    hypers = tmp_path / "acsf.json"
    hypers.write_text(json.dumps({"species": ["H", "C"], "r_cut": 4.0, "g2_params": G2,
                                  "g4_params": G4}))
    structure = tmp_path / "td.xyz"
    an.tetrahedron().write(structure)
    assert main(["sensitivity", str(structure), "-d", "acsf", "--hypers", str(hypers),
                 "--center", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sensitivity"]["rank"] == 1 and out["counts"]["symmetry"] == 8
    assert main(["sensitivity", str(structure), "-d", "acsf", "--hypers", str(hypers)]) == 0
    assert "rank 1 of 9" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_audit_full(tmp_path, capsys):
    from atomdesc.cli import main

    hypers = tmp_path / "acsf.json"
    hypers.write_text(json.dumps({"species": ["H", "C"], "r_cut": 4.0, "g2_params": G2,
                                  "g4_params": G4}))
    assert main(["audit", "-d", "acsf", "--hypers", str(hypers), "-o", str(tmp_path / "r")]) == 0
    assert "report and figures" in capsys.readouterr().out
    assert (tmp_path / "r" / "xpm_sigma_min_map.png").exists()


def test_audit_of_the_example_plugin_family(example_plugin, tmp_path):
    """The test plugin's family (entry point, third-party cutoff) audits end to end."""
    d = atomdesc.descriptor("coordination", species=["H", "C", "O"], r_cut=3.0)
    report = an.audit(d, tmp_path / "report", quick=True)
    crit = report.data["criteria"]
    assert set(crit) == {"invariance", "uniqueness", "continuity", "cost", "fixed_size",
                         "generality"}
    assert crit["invariance"]["verdict"] == "pass"
    assert report.data["singular_points"]["tetrahedron"]["rank"] <= 1
    assert (tmp_path / "report" / "singular_values.png").exists()
