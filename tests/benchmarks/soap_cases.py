"""SOAP power spectrum: atomdesc against DScribe 2.1, featomic and quippy (QUIP).

Hyper-parameters of issue 3: r_cut = 5 Å, n_max = 8, l_max = 6, σ = 0.3 Å,
GTO radial basis. Each peer is compared with the atomdesc convention that
reproduces it, so both sides use the same neighbours, basis and feature count:

* DScribe 2.1 (``SOAP(..., rbf="gto")``) ↔ ``convention="dscribe"``: DScribe's
  l-dependent GTOs, no smoothing function, neighbours up to
  r_cut + σ sqrt(-2 ln 1e-3) = 6.12 Å, DScribe's column order (the values are
  compared before timing). DScribe has analytic gradients only without
  periodicity, so DScribe gradients are timed on g2 only (its periodic
  derivatives are numerical: 6 × n_atoms calls per centre, out of scope here).
* featomic ``SoapPowerSpectrum`` ↔ ``convention="featomic"``: featomic's GTO
  basis, Gaussian density normalisation, shifted-cosine cutoff of width 0.5 Å,
  every (n, n') pair; features compared up to column order (sorted rows) on
  one-species systems (featomic's dense layout pads the other type pairs; the
  tests check every species pair against stored featomic numbers).
  Gradients with respect to positions, and positions + strain, are timed for
  both.
* quippy ``soap`` (``cutoff_transition_width=0.5``) ↔ the default atomdesc
  convention with the same shifted-cosine cutoff: same neighbours and
  feature count, but QUIP's own radial basis, so values are not compared.

All timings are single-threaded (``n_threads=1``, ``n_jobs=1``,
``RAYON_NUM_THREADS=1`` set before featomic is imported; quippy runs one
thread), wall clock of the public API, interleaved round robin.
"""

from __future__ import annotations

import argparse
import os
import resource
from collections.abc import Callable
from typing import Any

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # featomic: one thread, before its import

import numpy as np

import atomdesc
from benchmark import (
    Goal,
    Report,
    as_list,
    fmt_bytes,
    fmt_rate,
    fmt_ratio,
    fmt_time,
    machine_lines,
    package_version,
    run_memory_probe,
    time_interleaved,
    time_once,
    time_thread_counts,
    wait_for_quiet,
)
from systems import DEFAULT_SYSTEMS, SYSTEMS, BenchSystem

DESCRIPTION = ("SOAP power spectrum: atomdesc vs DScribe 2.1, featomic, quippy "
               "(pip install dscribe==2.1.2 featomic quippy-ase)")

R_CUT, N_MAX, L_MAX, SIGMA, WIDTH = 5.0, 8, 6, 0.3, 0.5
GOAL_FEATURES = 2.0  # fastest peer / atomdesc, features, every system, 1 thread
GOAL_GRADIENTS = 3.0  # featomic / atomdesc, features + position gradients, every system
GOAL_STRAIN = 0.30  # extra time of strain gradients over features + position gradients
GOAL_THREADS = 1.7  # atomdesc 1 thread / 2 threads on the large periodic systems
THREAD_SYSTEMS = ("si512", "cuau864")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS),
                        default=list(DEFAULT_SYSTEMS))
    parser.add_argument("--peers", nargs="+", default=["dscribe", "featomic", "quippy"],
                        choices=["dscribe", "featomic", "quippy"])
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table")


# ------------------------------------------------------------------ codes


def ours(system: BenchSystem, convention: str, family: str = "soap", n_max: int = N_MAX,
         l_max: int = L_MAX) -> atomdesc.Descriptor:
    kwargs: dict[str, Any] = dict(species=system.species, r_cut=R_CUT, n_max=n_max,
                                  l_max=l_max, sigma=SIGMA, convention=convention)
    if convention == "atomdesc":
        kwargs["cutoff"] = {"name": "shifted_cosine", "width": WIDTH}
    return atomdesc.descriptor(family, **kwargs)


def dscribe_soap(system: BenchSystem) -> Any:
    from dscribe.descriptors import SOAP

    return SOAP(species=system.species, r_cut=R_CUT, n_max=N_MAX, l_max=L_MAX, sigma=SIGMA,
                rbf="gto", periodic=system.periodic)


def featomic_soap() -> Any:
    from featomic import SoapPowerSpectrum

    return SoapPowerSpectrum(
        cutoff={"radius": R_CUT, "smoothing": {"type": "ShiftedCosine", "width": WIDTH}},
        density={"type": "Gaussian", "width": SIGMA},
        basis={"type": "TensorProduct", "max_angular": L_MAX,
               "radial": {"type": "Gto", "max_radial": N_MAX - 1}},
    )


def quippy_soap(system: BenchSystem) -> Any:
    from ase.data import atomic_numbers
    from quippy.descriptors import Descriptor

    zs = sorted(atomic_numbers[s] for s in system.species)
    return Descriptor(
        f"soap cutoff={R_CUT} cutoff_transition_width={WIDTH} n_max={N_MAX} l_max={L_MAX} "
        f"atom_sigma={SIGMA} n_species={len(zs)} species_Z={{{' '.join(map(str, zs))}}}")


def featomic_values(tensor: Any) -> np.ndarray:
    """featomic's features, one row per (structure, atom), rows sorted to ignore column order."""
    block = tensor.keys_to_samples("center_type").keys_to_properties(
        ["neighbor_1_type", "neighbor_2_type"]).block()
    return np.sort(block.values, axis=1)


def available(peer: str) -> str | None:
    """None if the peer imports and runs, else why not."""
    try:
        if peer == "dscribe":
            import dscribe  # noqa: F401
        elif peer == "featomic":
            import featomic  # noqa: F401
        else:
            from quippy.descriptors import Descriptor  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"{type(exc).__name__}: {exc}"
    return None


# ------------------------------------------------------------------ measurements


def measure_system(system: BenchSystem, peers: list[str], args: argparse.Namespace,
                   ) -> dict[str, Any]:
    x = system.inputs
    ad_ds, ad_fe, ad_q = ours(system, "dscribe"), ours(system, "featomic"), ours(system, "atomdesc")
    calls: dict[str, Callable[[], Any]] = {
        "atomdesc[dscribe]": lambda: ad_ds.compute(x, n_threads=1),
        "atomdesc[featomic]": lambda: ad_fe.compute(x, n_threads=1),
        "atomdesc[featomic]+grad": lambda: ad_fe.compute(x, gradients=True, n_threads=1),
        "atomdesc[featomic]+grad+strain": lambda: ad_fe.compute(
            x, gradients=True, strain_gradients=True, n_threads=1),
    }
    checks: dict[str, float] = {}
    if "dscribe" in peers:
        ds = dscribe_soap(system)
        calls["dscribe"] = lambda: ds.create(x, n_jobs=1)
        mine = [r.features for r in as_list(ad_ds.compute(x, n_threads=1))]
        theirs = as_list(ds.create(x, n_jobs=1))
        checks["dscribe"] = max(float(np.abs(a - b).max()) for a, b in zip(mine, theirs)) / max(
            float(np.abs(b).max()) for b in theirs)
        if not system.periodic:
            calls["atomdesc[dscribe]+grad"] = lambda: ad_ds.compute(x, gradients=True, n_threads=1)
            # attach=True: the centre moves with its atom, as in atomdesc's gradients
            calls["dscribe+grad"] = lambda: ds.derivatives(x, method="analytical", attach=True,
                                                           n_jobs=1)
    if "featomic" in peers:
        fe = featomic_soap()
        calls["featomic"] = lambda: fe.compute(x)
        calls["featomic+grad"] = lambda: fe.compute(x, gradients=["positions"])
        if system.periodic:
            calls["featomic+grad+strain"] = lambda: fe.compute(x, gradients=["positions", "strain"])
        mine = np.sort(np.concatenate([r.features for r in as_list(ad_fe.compute(x, n_threads=1))]),
                       axis=1)
        theirs = featomic_values(fe.compute(x))
        if mine.shape == theirs.shape:  # one species; else featomic pads other type pairs
            checks["featomic"] = float(np.abs(mine - theirs).max() / np.abs(theirs).max())
    if "quippy" in peers:
        q = quippy_soap(system)
        structures = system.structures
        calls["atomdesc[quippy-like]"] = lambda: ad_q.compute(x, n_threads=1)
        calls["quippy"] = lambda: [q.calc(a) for a in structures]
        calls["atomdesc[quippy-like]+grad"] = lambda: ad_q.compute(x, gradients=True, n_threads=1)
        calls["quippy+grad"] = lambda: [q.calc(a, grad=True) for a in structures]
    times = time_interleaved(calls, args.repeat, 0.05 if args.quick else 0.3)
    return {"system": system, "times": times, "checks": checks,
            "n_features": {"dscribe": ad_ds.n_features, "featomic": ad_fe.n_features,
                           "quippy": ad_q.n_features}}


def measure_blocks(system: BenchSystem, repeat: int) -> dict[str, float]:
    """Features + position gradients, 1 thread, each code's calls in a block of their own:
    atomdesc, featomic, atomdesc again, then atomdesc with strain (best of ``repeat`` each).

    The interleaved timings put every atomdesc call right after a featomic call; when
    atomdesc's outputs were fresh memory each call, faulting their pages in cost a large
    and erratic share of it (docs/benchmarks.md: first-touch cost, not compaction as first
    thought). Blocks show each code at its own steady state; the block after featomic's
    shows whether the first one was flattered, and the strain block what strain adds to
    it. With recycled outputs the two tables agree; the blocks stay as the check.
    """
    x = system.inputs
    ad, fe = ours(system, "featomic"), featomic_soap()
    mine = lambda: ad.compute(x, gradients=True, n_threads=1)  # noqa: E731
    blocks = {"atomdesc": mine, "featomic": lambda: fe.compute(x, gradients=["positions"]),
              "atomdesc after featomic": mine,
              "atomdesc with strain": lambda: ad.compute(x, gradients=True,
                                                          strain_gradients=True, n_threads=1)}
    best = {}
    for name, call in blocks.items():
        timing = time_once(call, repeat)[0]
        best[name] = timing.best
        # every sample in the log: a block slow throughout is not one slow sample
        print(f"{system.key} block {name}: "
              + " ".join(f"{1e3 * t:.1f}" for t in timing.samples) + f" ms, load {timing.load:.2f}",
              flush=True)
    return best


def measure_threads(system: BenchSystem, threads: list[int], args: argparse.Namespace) -> Any:
    return time_thread_counts(ours(system, "featomic"), system.inputs, threads, args, 0.3)


def peak_rss() -> int:
    """Peak resident size of this process in bytes.

    VmHWM of /proc/self/status, not getrusage's ru_maxrss: Linux carries ru_maxrss over
    fork + exec, so a probe started by a large benchmark process would report the parent's
    peak (and a growth of zero).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_probe(key: str) -> dict[str, Any]:
    """Peak RSS growth of one features + position gradients call, in a fresh process.

    ``key`` is ``system:code`` with code ``atomdesc`` (``convention="featomic"``)
    or ``featomic``.
    """
    system_key, code = key.split(":")
    system = SYSTEMS[system_key]()
    x = system.inputs
    warm = system.structures[0][:8]  # small: the peak must come from the measured call
    if code == "atomdesc":
        ad = ours(system, "featomic")
        ad.compute(warm, n_threads=1)  # imports done, first-call set-up paid
        call = lambda: ad.compute(x, gradients=True, n_threads=1)  # noqa: E731
    else:
        fe = featomic_soap()
        fe.compute(warm)
        call = lambda: fe.compute(x, gradients=["positions"])  # noqa: E731
    before = peak_rss()
    result = call()
    after = peak_rss()
    del result
    return {"rss_before": before, "rss_after": after}


# ------------------------------------------------------------------ report


def rate(system: BenchSystem, seconds: float) -> str:
    return fmt_rate(system.n_atoms / seconds)


def run(args: argparse.Namespace, report: Report) -> None:
    report.heading(1, "SOAP benchmark: atomdesc vs DScribe, featomic, quippy")
    for line in machine_lines(["numpy", "dscribe", "featomic", "quippy-ase", "vesin"]):
        report.add(line)
    report.add(f"- r_cut {R_CUT} Å, n_max {N_MAX}, l_max {L_MAX}, σ {SIGMA} Å, GTO; "
               f"best of {args.repeat} interleaved samples; rates in atoms per second")
    peers = []
    for peer in args.peers:
        why = available(peer)
        if why is None:
            peers.append(peer)
        else:
            report.add(f"- {peer} not available: {why}")

    results = []
    for key in args.systems:
        wait_for_quiet(args.max_load, args.max_wait)
        results.append(measure_system(SYSTEMS[key](), peers, args))

    report.heading(2, "One thread")
    rows = []
    worst_f, worst_g, worst_s = (np.inf, ""), (np.inf, ""), (-np.inf, "")
    for res in results:
        s, t = res["system"], {k: v.best for k, v in res["times"].items()}
        load = max(v.load for v in res["times"].values())
        for peer, mine in (("dscribe", "atomdesc[dscribe]"), ("featomic", "atomdesc[featomic]"),
                           ("quippy", "atomdesc[quippy-like]")):
            if peer not in t:
                continue
            row = [s.key, peer, res["n_features"][peer], rate(s, t[mine]), rate(s, t[peer]),
                   fmt_ratio(t[peer] / t[mine])]
            g_mine, g_peer = mine + "+grad", peer + "+grad"
            if g_mine in t and g_peer in t:
                row += [rate(s, t[g_mine]), rate(s, t[g_peer]), fmt_ratio(t[g_peer] / t[g_mine])]
            else:
                row += ["—", "—", "—"]
            row += [f"{res['checks'][peer]:.1e}" if peer in res["checks"] else "not compared",
                    f"{load:.2f}"]
            rows.append(row)
        fastest = min((t[p] for p in ("dscribe", "featomic", "quippy") if p in t), default=None)
        if fastest is not None:
            # like for like: the fastest peer against atomdesc in that peer's convention
            best_peer = min((p for p in ("dscribe", "featomic", "quippy") if p in t),
                            key=lambda p: t[p])
            mine = {"dscribe": "atomdesc[dscribe]", "featomic": "atomdesc[featomic]",
                    "quippy": "atomdesc[quippy-like]"}[best_peer]
            ratio = fastest / t[mine]
            if ratio < worst_f[0]:
                worst_f = (ratio, f"{s.key} ({best_peer})")
        if "featomic+grad" in t:
            ratio = t["featomic+grad"] / t["atomdesc[featomic]+grad"]
            if ratio < worst_g[0]:
                worst_g = (ratio, s.key)
            extra = t["atomdesc[featomic]+grad+strain"] / t["atomdesc[featomic]+grad"] - 1
            if extra > worst_s[0]:
                worst_s = (extra, s.key)
    report.table(["system", "peer", "features", "atomdesc", "peer", "ratio",
                  "atomdesc +grad", "peer +grad", "ratio", "max rel. diff", "load"], rows)
    report.add("`ratio` = peer time / atomdesc time (higher is better for atomdesc); "
               "atomdesc runs the convention matching the peer.")
    report.add()

    rows = []
    for res in results:
        s, t = res["system"], {k: v.best for k, v in res["times"].items()}
        g = t["atomdesc[featomic]+grad"]
        gs = t["atomdesc[featomic]+grad+strain"]
        row = [s.key, fmt_time(g), fmt_time(gs), f"{100 * (gs / g - 1):+.0f} %"]
        if "featomic+grad+strain" in t:
            row.append(f"{100 * (t['featomic+grad+strain'] / t['featomic+grad'] - 1):+.0f} %")
        else:
            row.append("—")
        rows.append(row)
    report.heading(3, "Strain gradients (convention featomic)")
    report.table(["system", "atomdesc +grad", "atomdesc +grad +strain", "strain adds",
                  "featomic: strain adds"], rows)

    if worst_f[1]:
        report.goal(Goal("features vs fastest peer", f"≥ {GOAL_FEATURES}×",
                         fmt_ratio(worst_f[0]), worst_f[0] >= GOAL_FEATURES, worst_f[1]))
    if worst_g[1]:
        report.goal(Goal("features + position gradients vs featomic", f"≥ {GOAL_GRADIENTS}×",
                         fmt_ratio(worst_g[0]), worst_g[0] >= GOAL_GRADIENTS, worst_g[1]))
        report.goal(Goal("strain gradients add", f"≤ {GOAL_STRAIN:.0%}",
                         f"{worst_s[0]:+.0%}", worst_s[0] <= GOAL_STRAIN, worst_s[1]))

    if "featomic" in peers:
        rows = []
        worst_b, worst_bs = (np.inf, ""), (-np.inf, "")
        for res in results:
            wait_for_quiet(args.max_load, args.max_wait)
            system = res["system"]
            key = system.key
            b = measure_blocks(system, args.repeat)
            ratio = b["featomic"] / max(b["atomdesc"], b["atomdesc after featomic"])
            extra = b["atomdesc with strain"] / b["atomdesc after featomic"] - 1
            rows.append([key, fmt_time(b["atomdesc"]), fmt_time(b["atomdesc after featomic"]),
                         fmt_time(b["featomic"]), fmt_ratio(ratio),
                         fmt_time(b["atomdesc with strain"]), f"{100 * extra:+.0f} %"])
            if ratio < worst_b[0]:
                worst_b = (ratio, key)
            if extra > worst_bs[0]:
                worst_bs = (extra, key)
        report.heading(3, "Features + position gradients in blocks (convention featomic)")
        report.add("Each code's calls in a block of their own (atomdesc, featomic, atomdesc "
                   "again, atomdesc with strain), best of each; ratio against the slower "
                   "atomdesc block, strain against the block before it. See `measure_blocks` "
                   "for why this differs from the interleaved tables.")
        report.add()
        report.table(["system", "atomdesc +grad", "atomdesc +grad, after featomic",
                      "featomic +grad", "ratio", "atomdesc +grad +strain", "strain adds"], rows)
        report.goal(Goal("features + position gradients vs featomic, in blocks",
                         f"≥ {GOAL_GRADIENTS}×", fmt_ratio(worst_b[0]),
                         worst_b[0] >= GOAL_GRADIENTS, worst_b[1]))
        report.goal(Goal("strain gradients add, in blocks", f"≤ {GOAL_STRAIN:.0%}",
                         f"{worst_bs[0]:+.0%}", worst_bs[0] <= GOAL_STRAIN, worst_bs[1]))

    threads = args.threads
    if len(threads) > 1:
        report.heading(2, "Threads (atomdesc, convention featomic)")
        rows = []
        worst_t = (np.inf, "")
        for key in args.systems:
            s = SYSTEMS[key]()
            wait_for_quiet(args.max_load, args.max_wait)
            tt = measure_threads(s, threads, args)
            load = max(v.load for v in tt.values())
            for what in ("features", "gradients"):
                base = tt[f"{what}/{threads[0]}"].best
                cells = [s.key, what] + [rate(s, tt[f"{what}/{n}"].best) for n in threads]
                speed = base / tt[f"{what}/{threads[-1]}"].best
                cells += [fmt_ratio(speed), f"{load:.2f}"]
                rows.append(cells)
                if key in THREAD_SYSTEMS and speed < worst_t[0]:
                    worst_t = (speed, f"{s.key} {what}")
        report.table(["system", "what"] + [f"{n} thread(s)" for n in threads]
                     + [f"{threads[-1]} vs {threads[0]}", "load"], rows)
        if worst_t[1]:
            report.goal(Goal(f"{threads[-1]} threads vs {threads[0]}", f"≥ {GOAL_THREADS}×",
                             fmt_ratio(worst_t[0]), worst_t[0] >= GOAL_THREADS, worst_t[1]))

    if not args.no_memory and "featomic" in peers:
        report.heading(2, "Peak memory, features + position gradients (fresh process each)")
        rows = []
        worst_m = (0.0, "")
        for key in args.systems:
            probes = {code: run_memory_probe("soap", f"{key}:{code}")
                      for code in ("atomdesc", "featomic")}
            grow = {c: p["rss_after"] - p["rss_before"] for c, p in probes.items()}
            ratio = grow["atomdesc"] / max(grow["featomic"], 1)
            rows.append([key, fmt_bytes(grow["atomdesc"]), fmt_bytes(grow["featomic"]),
                         f"{ratio:.2f}"])
            if ratio > worst_m[0]:
                worst_m = (ratio, key)
        report.table(["system", "atomdesc peak RSS growth", "featomic peak RSS growth",
                      "atomdesc / featomic"], rows)
        report.goal(Goal("peak memory with gradients vs featomic", "≤ 1.00",
                         f"{worst_m[0]:.2f}", worst_m[0] <= 1.0, worst_m[1]))

    report.heading(2, "Goals")
    report.goal_table()
    report.add(f"peers: dscribe {package_version('dscribe')}, featomic "
               f"{package_version('featomic')}, quippy-ase {package_version('quippy-ase')}")
