"""Make the figures of docs/singular-points.md and the numbers quoted there.

    python docs/figures/make_figures.py [--data PATH_TO_random_methane_selection-10k.extxyz]
                                        [--n-dataset 500] [--quick]

Writes, next to this script: xpm_sigma_min_map.png, singular_values.png, truncation_scan.png,
sigma_min_distribution.png and figures.json (every number the page quotes). Settings (the same
as tests/test_analysis_soap.py): species H, C; r_cut 3.5 Å; σ 0.5 Å; DScribe's GTO basis; the
default shifted-cosine cutoff; raw features; rank at rtol 1e-8; ACSF from docs/acsf_analysis.json.
"""

from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np

import atomdesc
from atomdesc import analysis as an

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent
BASE = {"species": ["H", "C"], "r_cut": 3.5}
FLOOR = 1e-18  # zeros on log axes


def descriptors() -> dict[str, atomdesc.Descriptor]:
    acsf = json.loads((DOCS / "acsf_analysis.json").read_text())
    return {
        "radial spectrum (ν=1)": atomdesc.descriptor("spherical_expansion", **BASE, n_max=6,
                                                     l_max=0),
        "soap (ν=2)": atomdesc.descriptor("soap", **BASE, n_max=6, l_max=6),
        "bispectrum (ν=3)": atomdesc.descriptor("bispectrum", **BASE, n_max=4, l_max=4),
        "ACSF (ν=2)": atomdesc.descriptor_from_hypers({"family": "acsf", **acsf}),
    }


# ------------------------------------------------------------------ (a) X± σ_min map

def _map_row(args):
    name, theta, phis = args
    d = descriptors()[name]
    row = []
    for phi in phis:
        atoms = an.xpm_h4(theta, phi)
        dist = atoms.get_all_distances()[1:, 1:][np.triu_indices(4, 1)]
        row.append(np.nan if dist.min() < 0.5 else
                   an.sensitivity(d, atoms, 0).relative_sigma_min)
    return row


def xpm_map(names, n_theta, n_phi, pool):
    thetas = np.linspace(0, np.pi, n_theta)
    phis = np.linspace(-np.pi, np.pi, n_phi)
    out = {}
    for name in names:
        rows = pool.map(_map_row, [(name, t, phis) for t in thetas])
        out[name] = np.array(rows)
    return thetas, phis, out


def plot_map(thetas, phis, maps, branch, path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    vmin, vmax = 1e-5, max(np.nanmax(v) for v in maps.values())
    fig, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps), 4.0), sharey=True,
                             constrained_layout=True)
    for ax, (name, v) in zip(axes, maps.items()):
        ax.set_facecolor("0.85")  # grey: H4 within 0.5 Å of another H, not computed
        mesh = ax.pcolormesh(np.degrees(phis), np.degrees(thetas), np.maximum(v, FLOOR),
                             norm=LogNorm(vmin=vmin, vmax=vmax), shading="nearest",
                             cmap="viridis")
        # hollow rings around the branch points: the cell under them stays visible
        for phi in (-180, 0, 180):
            ax.plot(phi, 90, "o", ms=16, mfc="none", mec="red", mew=1.5)
        for phi, sign in ((0, "+"), (180, "-")):
            ax.annotate(f"{branch[name][sign]:.0e}", (phi, 90), xytext=(0, 12),
                        textcoords="offset points", ha="right" if phi else "center",
                        color="red", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("φ of H4 (deg)")
        ax.set_xticks([-180, -90, 0, 90, 180])
    axes[0].set_ylabel("θ of H4 (deg)")
    axes[0].invert_yaxis()
    cb = fig.colorbar(mesh, ax=axes, extend="min", shrink=0.9)
    cb.set_label("σ_min / σ_max (values < 1e-5 in the darkest colour)")
    fig.suptitle("X± family: H1–H3 fixed, H4 on the 1.09 Å sphere (grey: H4 within 0.5 Å of "
                 "another H); red rings: branch points H4 = (±1.09, 0, 0), σ_min/σ_max there",
                 fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ (b) spectra

def environments():
    return {
        "tetrahedron (T_d)": an.tetrahedron(),
        "planar": an.planar(),
        "collinear": an.collinear(),
        "random CH4": an.random_ch4(1),
        "X± branch point": an.xpm_branch_point(1),
    }


def spectra(descs):
    out = {}
    for name, d in descs.items():
        out[name] = {}
        for env, atoms in environments().items():
            s = an.sensitivity(d, atoms, 0)
            out[name][env] = {"rank": s.rank, "n_dof": s.n_dof,
                              "relative": (s.singular_values / s.sigma_max).tolist()}
    return out


def plot_spectra(spec, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(spec), figsize=(5.6 * len(spec), 4.2), sharey=True)
    for ax, (name, envs) in zip(axes, spec.items()):
        for k, (env, r) in enumerate(envs.items()):
            s = np.maximum(r["relative"], FLOOR)
            ax.semilogy(np.arange(1, len(s) + 1) + 0.07 * (k - 2), s, "o-", ms=5,
                        label=f"{env}: rank {r['rank']} of {r['n_dof']}")
        ax.axhline(1e-8, color="k", ls="--", lw=0.8, label="rank tolerance 1e-8")
        ax.set_xlabel("k (rotations projected out)")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(3e-19, 3)
        ax.legend(fontsize=7, loc="center", bbox_to_anchor=(0.6, 0.45))
    axes[0].set_ylabel("σ_k / σ_max")
    fig.suptitle("Jacobian singular values of the C-centred features (exact zeros drawn at "
                 "1e-18)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ (c) truncation

def truncation():
    scan = an.truncation_scan("soap", {"n_max": [1, 2, 3, 4, 6, 8],
                                       "l_max": [0, 1, 2, 3, 4, 6, 8]},
                              an.random_ch4(1), base=BASE)
    return scan


def plot_truncation(scan, path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    rank, rel, nf = scan.grid("rank"), scan.grid("relative_sigma_min"), scan.grid("n_features")
    n_vals, l_vals = scan.values
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    im = axes[0].imshow(rank, origin="lower", cmap="viridis", vmin=0, vmax=9)
    fig.colorbar(im, ax=axes[0], label="rank (of 9)")
    im2 = axes[1].imshow(np.maximum(rel, FLOOR), origin="lower", cmap="magma",
                         norm=LogNorm(vmin=1e-9, vmax=1e-2))
    fig.colorbar(im2, ax=axes[1], extend="min", label="σ_min / σ_max")
    for (i, k), r in np.ndenumerate(rank):
        axes[0].text(k, i, f"{int(r)}\n({int(nf[i, k])})", ha="center", va="center",
                     fontsize=7, color="w" if r < 7 else "k")
        v = rel[i, k]
        axes[1].text(k, i, "0" if v < 1e-14 else f"{v:.0e}", ha="center", va="center",
                     fontsize=7, color="w" if v < 1e-4 else "k")
    for ax in axes:
        ax.set_xticks(range(len(l_vals)), [str(v) for v in l_vals])
        ax.set_yticks(range(len(n_vals)), [str(v) for v in n_vals])
        ax.set_xlabel("l_max")
        ax.set_ylabel("n_max")
    axes[0].set_title("rank (number of features)", fontsize=10)
    axes[1].set_title("σ_min / σ_max (\"0\": below 1e-14)", fontsize=10)
    fig.suptitle("soap truncation scan at a random CH4 (r_cut 3.5 Å, σ 0.5 Å, GTO)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ (d) dataset

def _dataset_chunk(args):
    name, frames = args
    d = descriptors()[name]
    out = []
    for atoms in frames:
        s = an.sensitivity(d, atoms, 0)
        # ν = 1 sees distances only (rank 4): its smallest *radial* σ is σ_4
        k = 3 if name.startswith("radial") else -1
        out.append((s.singular_values[k] / s.sigma_max, s.rank))
    return out


def dataset(path, n, names, pool):
    import ase.io

    frames = ase.io.read(path, index=f":{n}")
    assert all(f.get_chemical_symbols()[0] == "C" for f in frames)
    chunks = [frames[i::8] for i in range(8)]
    out = {}
    for name in names:
        res = [r for part in pool.map(_dataset_chunk, [(name, c) for c in chunks]) for r in part]
        v = np.array([r[0] for r in res])
        ranks = np.array([r[1] for r in res])
        out[name] = {"values": v, "stats": {
            "n": int(v.size), "min": float(v.min()), "p5": float(np.percentile(v, 5)),
            "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
            "max": float(v.max()),
            "rank_counts": {int(a): int(b) for a, b in zip(*np.unique(ranks, return_counts=True))},
        }}
    return out


def plot_dataset(ds, n, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    lo = min(np.log10(np.maximum(r["values"], FLOOR)).min() for r in ds.values())
    bins = np.linspace(np.floor(lo), 0, 50)
    for name, r in ds.items():
        label = (f"{name}: σ_4/σ_max (rank 4)" if name.startswith("radial")
                 else f"{name}: σ_min/σ_max")
        ax.hist(np.log10(r["values"]), bins=bins, histtype="step", lw=1.6,
                label=f"{label}, median {r['stats']['median']:.1e}")
    ax.set_xlabel("log10 of the smallest relevant σ / σ_max")
    ax.set_ylabel("environments")
    ax.set_title(f"{n} CH4 environments of random_methane_selection-10k (the first {n})",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DOCS.parent.parent / "shared" / "data" / "structures"
                                          / "random_methane_selection-10k.extxyz"))
    p.add_argument("--n-dataset", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="coarse map, 50 environments")
    args = p.parse_args()
    descs = descriptors()
    numbers = {"settings": {k: d.hypers for k, d in descs.items()}}
    n_theta, n_phi = (13, 25) if args.quick else (37, 73)
    n_data = 50 if args.quick else args.n_dataset
    map_names = ["soap (ν=2)", "bispectrum (ν=3)", "ACSF (ν=2)"]
    with Pool() as pool:
        thetas, phis, maps = xpm_map(map_names, n_theta, n_phi, pool)
        ds = dataset(args.data, n_data, ["radial spectrum (ν=1)", "soap (ν=2)",
                                         "bispectrum (ν=3)"], pool)
    branch = {name: {sign: an.sensitivity(descs[name], an.xpm_branch_point(s), 0)
                     .relative_sigma_min for sign, s in (("+", 1), ("-", -1))}
              for name in map_names}
    plot_map(thetas, phis, maps, branch, HERE / "xpm_sigma_min_map.png")
    numbers["xpm_map"] = {
        "grid": [n_theta, n_phi], "branch_points": branch,
        "min_away_from_branch_points": {
            name: float(np.nanmin(np.where(np.abs(np.degrees(thetas) - 90)[:, None]
                                           + np.minimum(np.abs(np.degrees(phis)),
                                                        180 - np.abs(np.degrees(phis)))[None]
                                           > 1, v, np.nan)))
            for name, v in maps.items()},
        "median": {name: float(np.nanmedian(v)) for name, v in maps.items()},
    }
    spec = spectra({k: descs[k] for k in ("soap (ν=2)", "bispectrum (ν=3)")})
    plot_spectra(spec, HERE / "singular_values.png")
    numbers["spectra"] = spec
    scan = truncation()
    plot_truncation(scan, HERE / "truncation_scan.png")
    numbers["truncation"] = scan.to_dict()
    plot_dataset(ds, n_data, HERE / "sigma_min_distribution.png")
    numbers["dataset"] = {k: v["stats"] for k, v in ds.items()}
    (HERE / "figures.json").write_text(json.dumps(numbers, indent=1, default=float) + "\n")
    print(json.dumps({k: numbers[k] for k in ("xpm_map", "dataset")}, indent=1, default=float))
    print(scan.summary())


if __name__ == "__main__":
    main()
