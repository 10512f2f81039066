"""``audit(descriptor)``: a report card on the six criteria of a good descriptor.

Invariance, uniqueness, continuity/differentiability, cost, fixed size and
generality (DESIGN.md §7), plus the sensitivity analysis of SCIENCE.md §4: the
ranks at the symmetric and degenerate environments with the kind of each null
direction, σ_min/σ_max over random CH4 environments, the σ_min map of the X±
family and a truncation scan. The result is JSON-able data, a text summary and
(with matplotlib, the ``analysis`` extra) PNG figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import checks
from . import environments as env
from .jacobian import RTOL, sensitivity
from .scan import dataset_statistics, truncation_scan
from .singular import classify

#: Integer size hyper-parameters scanned for truncation when a family has them.
SIZE_HYPERS = (("n_max", "l_max"), ("max_radial", "max_angular"), ("nmax", "lmax"))


@dataclass
class AuditReport:
    """The audit of one descriptor: ``data`` (JSON-able), ``text`` and written figures."""

    data: dict[str, Any]
    text: str
    figures: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2)

    def __str__(self) -> str:
        return self.text


def environments_for(descriptor: Any, seed: int = 0) -> dict[str, Any]:
    """The audit's singular-point environments, in the descriptor's species."""
    roles = checks.species_roles(descriptor)
    sp = {"center": roles["C"], "neighbour": roles["H"]}
    return {
        "tetrahedron": env.tetrahedron(**sp),
        "planar": env.planar(seed=seed, **sp),
        "collinear": env.collinear(**sp),
        "bent": env.bent(**sp),
        "random_CH4": env.random_ch4(seed, **sp),
        "xpm_branch_point+": env.xpm_branch_point(1, **sp),
        "xpm_branch_point-": env.xpm_branch_point(-1, **sp),
    }


def default_truncation(descriptor: Any) -> tuple[dict[str, list[Any]], Callable[..., Any]] | None:
    """A truncation grid for a family: its integer size hyper-parameters (n_max × l_max), or
    else prefixes of its two longest parameter tables (e.g. ACSF's G2 × G4 lists)."""
    import atomdesc

    hypers = dict(descriptor.hypers)
    for a, b in SIZE_HYPERS:
        if isinstance(hypers.get(a), int) and isinstance(hypers.get(b), int):
            lo = 1 if a != "max_radial" else 0
            grid = {a: _spread(lo, hypers[a]), b: _spread(0, hypers[b])}
            return grid, lambda **kw: atomdesc.descriptor_from_hypers({**hypers, **kw})
    tables = [k for k, v in hypers.items()
              if isinstance(v, list) and len(v) >= 2 and all(isinstance(e, list) for e in v)]
    tables = [k for k in tables if k in sorted(tables, key=lambda k: -len(hypers[k]))[:2]]
    if not tables:
        return None
    grid = {k: _spread(1 if i == 0 else 0, len(hypers[k])) for i, k in enumerate(tables)}

    def build(**kw: int) -> Any:
        return atomdesc.descriptor_from_hypers({**hypers, **{k: hypers[k][:n] for k, n in kw.items()}})

    return grid, build


#: Higher body-order family used by default to classify null directions of a family as
#: incompleteness (SCIENCE.md §4.2 class 2): the ν = 3 bispectrum for the ν = 2 power spectrum.
DEFAULT_REFERENCES = {"soap": "bispectrum"}

#: The default reference keeps the family's hyper-parameters but at most this n_max / l_max
#: (a 6/6 bispectrum has 32128 features for two species; 8/8 has 151280 and costs 7x more).
REFERENCE_MAX_SIZE = 6


def default_reference(descriptor: Any) -> tuple[Any, dict[str, Any]] | None:
    """The default incompleteness reference of a family and a note on how it was built.

    ``soap`` (ν = 2) -> ``bispectrum`` (ν = 3) with the same hyper-parameters where
    the bispectrum has them (species, r_cut, σ, basis, cutoff, ...), n_max and
    l_max capped at :data:`REFERENCE_MAX_SIZE`. ``None`` for other families.
    """
    import atomdesc

    family = DEFAULT_REFERENCES.get(descriptor.name)
    if family is None:
        return None
    hypers = {k: v for k, v in descriptor.hypers.items() if k != "family"}
    # the smallest reference shows which hyper-parameters the family has
    probe = atomdesc.descriptor(family, species=hypers["species"], r_cut=hypers["r_cut"],
                                n_max=1, l_max=1)
    shared = {k: v for k, v in hypers.items() if k in probe.hypers}
    capped = {}
    for k in ("n_max", "l_max"):
        if isinstance(shared.get(k), int) and shared[k] > REFERENCE_MAX_SIZE:
            capped[k] = shared[k]
            shared[k] = REFERENCE_MAX_SIZE
    ref = atomdesc.descriptor(family, **shared)
    note = (f"default for {descriptor.name!r}: {family!r} (higher body order) with the same "
            f"hyper-parameters where they apply")
    if capped:
        note += ", " + ", ".join(f"{k} {v} -> {shared[k]}" for k, v in capped.items())
    dropped = sorted(set(hypers) - set(shared))
    if dropped:
        note += f" (not applicable: {', '.join(dropped)})"
    return ref, {"family": family, "hypers": ref.hypers, "default": True, "note": note}


def _spread(lo: int, hi: int, most: int = 6) -> list[int]:
    if hi - lo + 1 <= most:
        return list(range(lo, hi + 1))
    return sorted({int(round(x)) for x in np.linspace(lo, hi, most)})


def audit(descriptor: Any, output_dir: str | Path | None = None, *, quick: bool = False,
          reference: Any = "default", truncation: tuple[Mapping[str, Sequence[Any]],
                                                    Callable[..., Any]] | None | bool = True,
          frames: Sequence[Any] | None = None, seed: int = 0, rtol: float = RTOL) -> AuditReport:
    """Run every check on ``descriptor`` and score it on the six criteria.

    :param output_dir: where to write ``report.json``, ``report.txt`` and the
        PNG figures (created if needed); nothing is written when ``None``.
    :param quick: smaller grids and datasets (seconds rather than a minute).
    :param reference: a higher body-order descriptor used to classify null
        directions as incompleteness; ``"default"``: :func:`default_reference`
        (``bispectrum`` for ``soap``, none for other families); ``None``: none
        (spurious null directions are then "unexplained").
    :param truncation: ``(grid, factory)`` for the truncation scan,
        ``True`` for :func:`default_truncation`, ``False``/``None`` to skip.
    :param frames: environments (centre = atom 0) for the σ statistics;
        default: random CH4-like environments.
    """
    data: dict[str, Any] = {"hypers": descriptor.hypers, "family": descriptor.name,
                            "n_features": int(descriptor.n_features), "rtol": rtol,
                            "quick": quick}
    data["invariance"] = checks.invariance(descriptor, seed=seed)
    data["uniqueness"] = checks.uniqueness(descriptor, n_random=1 if quick else 3)
    data["smoothness"] = checks.smoothness(descriptor, n_points=21 if quick else 61)
    data["gradient_check"] = checks.gradient_check(descriptor)
    data["cost"] = checks.cost(descriptor, repeat=1 if quick else 3)
    data["fixed_size"] = checks.fixed_size(descriptor)
    data["generality"] = checks.generality(descriptor)

    if isinstance(reference, str) and reference == "default":
        found = default_reference(descriptor)
        reference, data["reference"] = found if found else (None, None)
    elif reference is not None:
        data["reference"] = {"family": reference.name, "hypers": reference.hypers,
                             "default": False, "note": "given"}
    else:
        data["reference"] = None
    larger = None
    trunc = default_truncation(descriptor) if truncation is True else (truncation or None)
    singular: dict[str, Any] = {}
    spectra: dict[str, list[float]] = {}
    for name, atoms in environments_for(descriptor, seed).items():
        c = classify(descriptor, atoms, 0, reference=reference, larger=larger, rtol=rtol)
        singular[name] = {
            "rank": c.sensitivity.rank, "n_dof": c.sensitivity.n_dof,
            "symmetry_rank_bound": c.symmetry.rank_bound, "counts": c.counts,
            "relative_sigma_min": c.sensitivity.relative_sigma_min,
            "null_vectors": [d.to_dict() for d in c.directions],
        }
        s = c.sensitivity.singular_values
        spectra[name] = (s / s[0]).tolist() if s.size and s[0] > 0 else s.tolist()
    data["singular_points"] = singular
    data["spectra"] = spectra

    roles = checks.species_roles(descriptor)
    if frames is None:
        n_env = 30 if quick else 200
        frames = [env.random_ch4(1000 + k, center=roles["C"], neighbour=roles["H"])
                  for k in range(n_env)]
    stats = dataset_statistics(descriptor, frames, 0, rtol=rtol)
    data["dataset"] = stats.to_dict()
    data["dataset"]["values"] = stats.relative_sigma_min.tolist()

    n_theta, n_phi = (9, 17) if quick else (25, 49)
    data["xpm_map"] = xpm_sigma_map(descriptor, n_theta, n_phi, rtol=rtol)

    if trunc is not None:
        grid, factory = trunc
        sc = truncation_scan(factory, grid, environments_for(descriptor, seed)["random_CH4"],
                             rtol=rtol)
        data["truncation"] = sc.to_dict()
    else:
        data["truncation"] = None

    data["criteria"] = score(data)
    data = _jsonable(data)
    text = summary_text(data)
    report = AuditReport(data, text)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(report.to_json())
        (out / "report.txt").write_text(text + "\n")
        report.figures = plot_report(data, out)
    return report


def xpm_sigma_map(descriptor: Any, n_theta: int = 25, n_phi: int = 49,
                  rtol: float = RTOL) -> dict[str, Any]:
    """σ_min/σ_max of the centre as H4 of the PRL X± family moves over the 1.09 Å sphere.

    The branch points (±1.09, 0, 0) are at θ = π/2, φ = 0 and π; ν ≤ 2
    descriptors have σ_min = 0 there (an incompleteness singular point).
    """
    roles = checks.species_roles(descriptor)
    thetas = np.linspace(0.0, np.pi, n_theta)
    phis = np.linspace(-np.pi, np.pi, n_phi)
    values = np.full((n_theta, n_phi), np.nan)
    for i, th in enumerate(thetas):
        for k, ph in enumerate(phis):
            atoms = env.xpm_h4(th, ph, center=roles["C"], neighbour=roles["H"])
            d = atoms.get_all_distances()[1:, 1:][np.triu_indices(4, 1)]
            if d.min() < 0.5:  # H4 on top of another neighbour
                continue
            values[i, k] = sensitivity(descriptor, atoms, 0, rtol=rtol).relative_sigma_min
    branch = [sensitivity(descriptor, env.xpm_branch_point(s, center=roles["C"],
                                                           neighbour=roles["H"]), 0,
                          rtol=rtol).relative_sigma_min for s in (1, -1)]
    return {"theta": thetas.tolist(), "phi": phis.tolist(), "relative_sigma_min": values.tolist(),
            "branch_points": {"+": branch[0], "-": branch[1]}}


def score(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One verdict (``pass``/``warn``/``fail``) and a note per criterion."""
    inv = data["invariance"]
    uq = data["uniqueness"]
    sm = data["smoothness"]
    sp = data["singular_points"]
    out: dict[str, dict[str, Any]] = {}
    group = "O(3)" if inv["o3_invariant"] else "SO(3)" if inv["so3_invariant"] else "none"
    out["invariance"] = {
        "verdict": "pass" if inv["so3_invariant"] else "fail",
        "note": f"invariant under {group} (worst rel {max(inv['rotation'], inv['translation'], inv['permutation']):.1e})",
    }
    generic = sp["random_CH4"]
    branch = {sign: sp[f"xpm_branch_point{sign}"] for sign in "+-"}
    spurious = sum(b["n_dof"] - b["rank"] for b in branch.values())
    full = data["dataset"]["fraction_full_rank"]
    notes = [f"X± {'separated' if uq['3body']['distinguished'] else 'NOT separated'}",
             f"B± {'separated' if uq['4body']['distinguished'] else 'NOT separated'}",
             f"random CH4 rank {generic['rank']}/{generic['n_dof']}",
             f"{100 * full:.0f}% of random envs full rank",
             "X± branch points: " + branch_point_note(branch)]
    verdict = "pass" if generic["rank"] == generic["n_dof"] and full == 1.0 else "fail"
    if verdict == "pass" and (not uq["3body"]["distinguished"] or spurious):
        verdict = "warn"
    out["uniqueness"] = {"verdict": verdict, "note": "; ".join(notes)}
    if "skipped" in sm:
        cont = {"verdict": "warn", "note": sm["skipped"]}
    else:
        ok = sm["continuous"] and sm["differentiable"] and data["gradient_check"]["passed"]
        cont = {"verdict": "pass" if ok else "fail",
                "note": f"jump at r_cut {sm['value_jump']:.1e}, dξ/dr at r_cut "
                        f"{sm['derivative_at_cutoff']:.1e}, gradients vs FD "
                        f"{data['gradient_check']['relative_error']:.1e}"}
    out["continuity"] = cont
    c = data["cost"]
    out["cost"] = {"verdict": "pass",
                   "note": f"{c['features_us_per_atom']:.1f} µs/atom features, "
                           f"{c['gradients_us_per_atom']:.1f} µs/atom with gradients, "
                           f"{c['n_features']} features/atom"}
    fs = data["fixed_size"]
    out["fixed_size"] = {"verdict": "pass" if fs["fixed"] else "fail",
                         "note": f"{fs['n_features']} features" + (
                             f"; errors: {fs['errors']}" if fs["errors"] else "")}
    g = data["generality"]
    bad = {k: v for k, v in g.items() if k not in ("species", "all_ok") and v != "ok"}
    out["generality"] = {"verdict": "pass" if g["all_ok"] else "fail",
                         "note": f"species {g['species']}; molecule, periodic, slab, small cell"
                                 + (f"; failures: {bad}" if bad else "")}
    return out


def branch_point_note(branch: Mapping[str, Mapping[str, Any]]) -> str:
    """Null directions at each X± branch point with their kinds, e.g.
    ``"+ 1 null (incompleteness 1), - 1 null (incompleteness 1)"``."""
    parts = []
    for sign, b in branch.items():
        n = b["n_dof"] - b["rank"]
        kinds = ", ".join(f"{k} {v}" for k, v in b["counts"].items() if v)
        parts.append(f"{sign} {n} null" + (f" ({kinds})" if kinds else ""))
    return ", ".join(parts)


def summary_text(data: dict[str, Any]) -> str:
    lines = [f"atomdesc audit of {data['family']!r} ({data['n_features']} features)",
             f"hypers: {json.dumps(data['hypers'])}", ""]
    for name, crit in data["criteria"].items():
        lines.append(f"{name:<12} {crit['verdict'].upper():<5} {crit['note']}")
    ref = data.get("reference")
    lines += ["", "incompleteness reference: " + (
        f"{ref['family']} ({ref['note']})" if ref else
        "none (spurious null directions stay 'unexplained'; pass --reference)")]
    lines += ["", f"singular points (rank / non-trivial directions, rtol {data['rtol']:g}):"]
    for name, sp in data["singular_points"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in sp["counts"].items() if v) or "none"
        lines.append(f"  {name:<19} {sp['rank']}/{sp['n_dof']}  (symmetry bound "
                     f"{sp['symmetry_rank_bound']}; null: {kinds})")
    ds = data["dataset"]["relative_sigma_min"]
    lines.append(f"σ_min/σ_max over {data['dataset']['n_environments']} random CH4: "
                 f"min {ds['min']:.2e}, 5% {ds['p5']:.2e}, median {ds['median']:.2e}")
    bp = data["xpm_map"]["branch_points"]
    lines.append(f"X± branch points σ_min/σ_max: + {bp['+']:.2e}, - {bp['-']:.2e}")
    grid = np.array(data["xpm_map"]["relative_sigma_min"], dtype=float)
    grid = grid[np.isfinite(grid)]
    if grid.size and np.mean(grid <= data["rtol"]) > 0.5:
        lines.append(f"  WARNING: rank lost on {100 * np.mean(grid <= data['rtol']):.0f}% of the "
                     "X± sphere (all C-H distances equal): truncation, not incompleteness — "
                     "e.g. soap needs l_max >= 5 there")
    if data["truncation"]:
        recs = [r for r in data["truncation"]["records"] if r.get("rank") is not None]
        names = data["truncation"]["names"]
        full = [r for r in recs if r["rank"] == r["n_dof"]]
        smallest = min(full, key=lambda r: r["n_features"]) if full else None
        where = (", ".join(f"{n}={smallest[n]}" for n in names)
                 + f" ({smallest['n_features']} features)" if smallest else "never")
        lines.append(f"truncation scan over {names}: smallest full-rank point {where}")
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


# ------------------------------------------------------------------ figures


def plot_report(data: dict[str, Any], out: Path) -> list[str]:
    """Write the audit's PNG figures; returns their paths (none without matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    paths = [plot_spectra(data, out / "singular_values.png"),
             plot_xpm_map(data, out / "xpm_sigma_min_map.png"),
             plot_dataset(data, out / "sigma_min_distribution.png")]
    if "curves" in data["smoothness"]:
        paths.append(plot_smoothness(data, out / "cutoff_smoothness.png"))
    if data["truncation"]:
        paths.append(plot_truncation(data, out / "truncation_scan.png"))
    return [str(p) for p in paths]


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _title(data: dict[str, Any]) -> str:
    return f"{data['family']} ({data['n_features']} features)"


def plot_spectra(data: dict[str, Any], path: Path, floor: float = 1e-18) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for k, (name, s) in enumerate(data["spectra"].items()):
        s = np.maximum(np.asarray(s, dtype=float), floor)
        ax.semilogy(np.arange(1, len(s) + 1) + 0.06 * (k - 3), s, "o-", ms=5, label=name)
    ax.axhline(data["rtol"], color="k", ls="--", lw=0.8, label=f"rank tolerance {data['rtol']:g}")
    ax.set_xlabel("index k (non-trivial directions; rotations projected out)")
    ax.set_ylabel("σ_k / σ_max")
    ax.set_title(f"Jacobian singular values — {_title(data)}")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_xpm_map(data: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    m = data["xpm_map"]
    values = np.array(m["relative_sigma_min"], dtype=float)
    values = np.where(np.isfinite(values), np.maximum(values, 1e-16), np.nan)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.set_facecolor("0.85")  # H4 on top of another neighbour: not computed
    # the exact zeros at the branch points would squeeze the rest of the map into the top
    # of a 1e-16.. scale: values below 1e-6 share the darkest colour, the rings say the value
    vmax = np.nanmax(values)
    vmin = min(max(np.nanmin(values), 1e-6), vmax / 10)
    mesh = ax.pcolormesh(np.degrees(m["phi"]), np.degrees(m["theta"]), values,
                         norm=LogNorm(vmin=vmin, vmax=vmax), shading="nearest", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="σ_min / σ_max", extend="min")
    # hollow rings: the cell of the branch point stays visible
    ax.plot([0, 180, -180], [90, 90, 90], "o", ms=14, mfc="none", mec="red", mew=1.5,
            label="branch points H4 = (±r,0,0)")
    for phi, sign in ((0, "+"), (180, "-")):
        ax.annotate(f"{m['branch_points'][sign]:.0e}", (phi, 90), xytext=(0, 10),
                    textcoords="offset points", ha="right" if phi else "center", color="red",
                    fontsize=7)
    ax.set_xlabel("φ of H4 (deg)")
    ax.set_ylabel("θ of H4 (deg)")
    ax.invert_yaxis()
    title = f"X± family, H4 on the 1.09 Å sphere — {_title(data)}"
    finite = values[np.isfinite(values)]
    lost = float(np.mean(finite <= data["rtol"])) if finite.size else 0.0
    if lost > 0.5:
        title += (f"\nrank lost on {100 * lost:.0f}% of the sphere (equal C-H distances): "
                  "truncation, e.g. soap needs l_max ≥ 5")
    ax.set_title(title, fontsize=9 if lost <= 0.5 else 8)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_dataset(data: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    v = np.maximum(np.asarray(data["dataset"]["values"], dtype=float), 1e-18)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(np.log10(v), bins=30, color="C0")
    ax.set_xlabel("log10 σ_min / σ_max")
    ax.set_ylabel("environments")
    ax.set_title(f"{len(v)} random CH4 environments — {_title(data)}", fontsize=9)
    return _save(fig, path)


def plot_smoothness(data: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    sm = data["smoothness"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for sp, c in sm["curves"].items():
        ax.plot(c["r"], c["value_change"], label=f"|ξ(r) − ξ(beyond)|/|ξ|, moving {sp}")
        ax.plot(c["r"], c["derivative"], ls="--", label=f"max |dξ/dr| (scaled), moving {sp}")
    ax.axvline(sm["r_cut"], color="k", lw=0.8)
    ax.set_xlabel("distance of the moving neighbour (Å)")
    ax.set_title(f"crossing the cutoff — {_title(data)}", fontsize=9)
    ax.legend(fontsize=6)
    return _save(fig, path)


def plot_truncation(data: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    t = data["truncation"]
    names, values = t["names"], t["values"]
    shape = tuple(len(v) for v in values)
    rank = np.full(shape, np.nan)
    rel = np.full(shape, np.nan)
    for idx, rec in zip(np.ndindex(*shape), t["records"]):
        if rec.get("rank") is not None:
            rank[idx] = rec["rank"]
            rel[idx] = max(rec["relative_sigma_min"], 1e-18)
    if len(shape) == 1:
        rank, rel = rank[:, None], rel[:, None]
        names, values = [*names, ""], [*values, [""]]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, arr, label, norm in ((axes[0], rank, "rank", None),
                                 (axes[1], rel, "σ_min / σ_max", LogNorm())):
        im = ax.imshow(arr, origin="lower", aspect="auto", norm=norm, cmap="viridis")
        fig.colorbar(im, ax=ax, label=label)
        ax.set_yticks(range(len(values[0])), [str(v) for v in values[0]])
        ax.set_xticks(range(len(values[1])), [str(v) for v in values[1]])
        ax.set_ylabel(names[0])
        ax.set_xlabel(names[1])
        for (i, k), v in np.ndenumerate(arr):
            if np.isfinite(v):
                ax.text(k, i, _cell_label(v, label == "rank"), ha="center", va="center",
                        fontsize=7 if label == "rank" else 6, color="w")
    axes[1].set_title("'0': σ_min/σ_max below 1e-14", fontsize=7)
    fig.suptitle(f"truncation scan at a random CH4 — {_title(data)}", fontsize=9)
    return _save(fig, path)


def _cell_label(value: float, integer: bool) -> str:
    if integer:
        return f"{int(value)}"
    return "0" if value < 1e-14 else f"{value:.0e}".replace("e-0", "e-")
