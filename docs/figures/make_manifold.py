"""Quasi-constant manifold following (SCIENCE.md §4.3 A7) for docs/singular-points.md.

    python docs/figures/make_manifold.py [--start manifold_pg-s0.3.xyz] [--steps 20000]

Starts at the first frame of the Parsaeifard–Goedecker manifold regenerated for σ = 0.3 Å SOAP
(``ch4-manifold-training/manifold_pg-s0.3.xyz``, Å, C first), walks ``--steps`` steps of
1e-4 Å along the softest direction of the C-centred `soap` Jacobian (rotations projected out),
saving every 100 steps, and records σ_min/σ_max, |Δξ|/|ξ|, |Δx| and P&G's E4 along the path,
and σ_min/σ_max of a `bispectrum` at every 10th sample. Writes manifold_path.png and
manifold.json next to this script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ase.io
import numpy as np

import atomdesc
from atomdesc import analysis as an

HERE = Path(__file__).resolve().parent
START = Path("/work/shared/data/structures/ch4-manifold-training/manifold_pg-s0.3.xyz")
#: the companion code's settings where atomdesc has them (GTO basis instead of the optimal one)
SETTINGS = {
    "soap σ 0.3 Å, r_cut 2.5 Å, 8/8": {"r_cut": 2.5, "sigma": 0.3, "n_max": 8, "l_max": 8},
    "soap σ 0.5 Å, r_cut 3.5 Å, 6/6": {"r_cut": 3.5, "sigma": 0.5, "n_max": 6, "l_max": 6},
}


def stiff_change(d: atomdesc.Descriptor, atoms, dx: float) -> float:
    """|Δξ|/|ξ| for a displacement of the same length along the stiffest direction."""
    s = an.sensitivity(d, atoms, 0)
    moved = atoms.copy()
    moved.positions[s.jacobian.atoms] += dx * s.right_vectors[0]
    x0, x1 = (d.compute(a, centers=[0]).features[0] for a in (atoms, moved))
    return float(np.linalg.norm(x1 - x0) / np.linalg.norm(x0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", type=Path, default=START)
    ap.add_argument("--steps", type=int, default=20000)
    args = ap.parse_args()
    start = ase.io.read(args.start, index=0)
    out: dict[str, dict] = {}
    for label, hyp in SETTINGS.items():
        ps = atomdesc.descriptor("soap", species=["H", "C"], **hyp)
        bs = atomdesc.descriptor("bispectrum", species=["H", "C"],
                                 **{**hyp, "n_max": 4, "l_max": 4})
        path = an.follow_null_direction(ps, start, 0, step=1e-4, n_steps=args.steps,
                                        save_every=100, observables={"E4": an.plane_overlap_e4})
        print(label)
        print(path.summary())
        every = max(len(path.frames) // 20, 1)
        bs_rel = [an.sensitivity(bs, f, 0).relative_sigma_min for f in path.frames[::every]]
        data = path.to_dict()
        data["hypers"] = hyp
        data["bispectrum_relative_sigma_min"] = {"steps": path.steps[::every].tolist(),
                                                 "values": bs_rel}
        data["stiff_feature_change"] = stiff_change(ps, start, float(path.displacement[-1]))
        print(f"  bispectrum σ_min/σ_max along the path: {min(bs_rel):.2e}..{max(bs_rel):.2e}; "
              f"same |Δx| along the stiffest direction: |Δξ|/|ξ| {data['stiff_feature_change']:.2e}")
        out[label] = data
    (HERE / "manifold.json").write_text(json.dumps(out, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for k, (label, data) in enumerate(out.items()):
        s = np.asarray(data["path_length"])
        axes[0].semilogy(s, data["relative_sigma_min"], color=f"C{k}", label=label)
        b = data["bispectrum_relative_sigma_min"]
        axes[0].semilogy(np.asarray(b["steps"]) * data["step"], b["values"], "o", ms=3,
                         color=f"C{k}", label="bispectrum 4/4, same σ, r_cut")
        axes[1].semilogy(s[1:], np.asarray(data["feature_change"])[1:], color=f"C{k}",
                         label=f"|Δξ|/|ξ|, {label}")
        axes[1].semilogy(s[1:], np.asarray(data["displacement"])[1:], ls="--", color=f"C{k}",
                         label="|Δx| (Å)")
        axes[2].plot(s, data["observables"]["E4"], color=f"C{k}", label=label)
    axes[0].set_ylabel("σ_min / σ_max")
    axes[1].set_ylabel("change from the start")
    axes[2].set_ylabel("E4 = Σ (n̂·n̂′)²")
    for ax in axes:
        ax.set_xlabel("path length (Å)")
        ax.legend(fontsize=6)
    fig.suptitle("following the softest direction from the P&G manifold (CH4, C-centred soap)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / "manifold_path.png", dpi=120)


if __name__ == "__main__":
    main()
