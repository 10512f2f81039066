"""ACSF: atomdesc against DScribe 2.1 on the same hyper-parameters.

DScribe is the peer with the same G1-G5 definitions, cosine cutoff and column
order (atomdesc's default ``convention="dscribe"``), so the features of both
are compared value by value before any timing is reported.

Hyper-parameters (an n2p2-like set): r_cut = 6 Å, cosine cutoff; 8 G2 with
r_s = 0 and eta = 0.001 ... 1.5 Å⁻²; 8 G4 with eta in {0.003, 0.03} Å⁻²,
zeta in {1, 4}, lambda in {-1, +1}. The species are those of each system.

Position gradients: DScribe's ACSF derivatives are numerical only
(``derivatives(method="numerical", attach=True)``): a central difference that
calls ``create_single`` for one centre twice per (centre, atom, direction),
i.e. 6 × n_centres × n_atoms calls. On a large periodic system a full run
takes minutes to over an hour, so it is run on the first k centres (``centers=range(k)``, all
atoms included) and its time is multiplied by n_centres / k. The rule is exact
up to the spread of one call's time: every centre costs the same
6 × n_atoms calls on the same structure (each call rebuilds the periodic
extension and cell list of the whole structure; only a small part of it
depends on the centre's neighbourhood). The g2 molecules are run in full.
DScribe's "features + gradients" time is that numerical-derivative time plus
its features-only time measured on all centres; atomdesc's is one
``compute(..., gradients=True)`` call, which returns both.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np

import atomdesc
from benchmark import (
    Goal,
    Report,
    Timing,
    as_list,
    fmt_bytes,
    fmt_rate,
    fmt_ratio,
    fmt_time,
    load_average,
    machine_lines,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    run_memory_probe,
    time_interleaved,
    time_once,
    time_thread_counts,
    wait_for_quiet,
)
from systems import DEFAULT_SYSTEMS, SYSTEMS, BenchSystem

DESCRIPTION = "ACSF (G2 + G4): atomdesc vs DScribe 2.1 (pip install dscribe==2.1.2)"

R_CUT = 6.0
G2_PARAMS = [[eta, 0.0] for eta in (0.001, 0.01, 0.03, 0.06, 0.15, 0.3, 0.6, 1.5)]
G4_PARAMS = [[eta, zeta, lam] for eta in (0.003, 0.03) for zeta in (1.0, 4.0)
             for lam in (-1.0, 1.0)]

GOAL_FEATURES = 5.0  # DScribe features time / atomdesc features time, every system
GOAL_GRADIENTS = 1000.0  # DScribe numerical / atomdesc analytic, periodic systems
GOAL_OVERHEAD = 3.0  # atomdesc features+gradients / DScribe features only, every system
GOAL_THREADS = 1.7  # atomdesc 1 thread / 2 threads on the large periodic systems
THREAD_SYSTEMS = ("si512", "cuau864")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS),
                        default=list(DEFAULT_SYSTEMS),
                        help="systems to run (default: all)")
    parser.add_argument("--dscribe-centres", type=int, default=None, metavar="K",
                        help="centres of DScribe's numerical-derivative subset on a single "
                             "structure (default 2, or 1 with --quick)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table")
    parser.add_argument("--no-stages", action="store_true",
                        help="skip the table of where atomdesc's time goes")


def atomdesc_acsf(system: BenchSystem) -> atomdesc.Descriptor:
    return atomdesc.descriptor("acsf", species=system.species, r_cut=R_CUT,
                               g2_params=G2_PARAMS, g4_params=G4_PARAMS, cutoff="cosine")


def dscribe_acsf(system: BenchSystem) -> Any:
    from dscribe.descriptors import ACSF

    return ACSF(species=system.species, r_cut=R_CUT, g2_params=G2_PARAMS,
                g4_params=G4_PARAMS, periodic=system.periodic)


def relative_difference(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    """max |ours - theirs| / max |theirs| over all arrays."""
    diff = max(float(np.abs(a - np.reshape(b, a.shape)).max(initial=0.0))
               for a, b in zip(ours, theirs))
    scale = max(float(np.abs(b).max(initial=0.0)) for b in theirs)
    return diff / scale if scale > 0 else diff


def neighbours_per_centre(system: BenchSystem) -> float:
    from ase.neighborlist import neighbor_list

    counts = [len(neighbor_list("i", atoms, R_CUT)) for atoms in system.structures]
    return sum(counts) / system.n_atoms


# ------------------------------------------------------------ measurements


def dscribe_numerical(ds: Any, system: BenchSystem, k: int, repeat: int,
                      ) -> tuple[Timing, float, str, list[np.ndarray], list[int] | None]:
    """Time DScribe's numerical derivatives, on all centres or on the first ``k``.

    :return: the timing, the full-system time it stands for, how that was
        obtained, the derivative arrays, and the centres used (None = all).
    """
    if system.is_list:
        timing, out = time_once(
            lambda: ds.derivatives(system.structures, method="numerical", attach=True,
                                   return_descriptor=False, n_jobs=1), repeat)
        return timing, timing.best, "all centres", as_list(out), None
    atoms = system.structures[0]
    k = min(k, len(atoms))
    centres = list(range(k))
    timing, out = time_once(
        lambda: ds.derivatives(atoms, centers=centres, method="numerical", attach=True,
                               return_descriptor=False, n_jobs=1), repeat)
    scale = len(atoms) / k
    how = f"first {k} of {len(atoms)} centres: {fmt_time(timing.best)}, ×{scale:g}"
    return timing, timing.best * scale, how, [out], centres


def atomdesc_dense_gradients(ad: atomdesc.Descriptor, system: BenchSystem,
                             centres: list[int] | None) -> list[np.ndarray]:
    results = as_list(ad.compute(system.inputs, centers=centres, gradients=True, n_threads=1))
    return [r.dense_gradients() for r in results]


def measure_system(system: BenchSystem, args: argparse.Namespace) -> dict[str, Any]:
    """Features and features + gradients of both libraries at one thread."""
    ad, ds = atomdesc_acsf(system), dscribe_acsf(system)
    x = system.inputs
    min_sample = 0.05 if args.quick else 0.2
    times = time_interleaved(
        {
            "atomdesc": lambda: ad.compute(x, n_threads=1),
            "atomdesc_grad": lambda: ad.compute(x, gradients=True, n_threads=1),
            "dscribe": lambda: ds.create(x, n_jobs=1),
        },
        args.repeat, min_sample,
    )
    ours = [r.features for r in as_list(ad.compute(x, n_threads=1))]
    theirs = as_list(ds.create(x, n_jobs=1))
    k = args.dscribe_centres or (1 if args.quick else 2)
    numerical, numerical_full, how, derivs, centres = dscribe_numerical(
        ds, system, k, 1 if args.quick else 2)
    return {
        "system": system,
        "times": times,
        "feature_diff": relative_difference(ours, theirs),
        "numerical": numerical,
        "numerical_full": numerical_full,
        "numerical_how": how,
        "gradient_diff": relative_difference(atomdesc_dense_gradients(ad, system, centres), derivs),
    }


def measure_threads(system: BenchSystem, threads: list[int], args: argparse.Namespace,
                    ) -> dict[str, Any]:
    return time_thread_counts(atomdesc_acsf(system), system.inputs, threads, args, 0.2)


def memory_probe(system_key: str) -> dict[str, Any]:
    """Peak memory of one features + gradients call (run in a fresh process)."""
    system = SYSTEMS[system_key]()
    ad = atomdesc_acsf(system)
    ad.compute(system.structures[0], n_threads=1)  # load the kernels outside the measurement
    gc.collect()
    rss_before = rss_bytes()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs)")
    tracemalloc.start()
    results = as_list(ad.compute(system.inputs, gradients=True, n_threads=1))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "rss_before": rss_before,
        "rss_peak": peak_rss_bytes(),
        "traced_peak": traced_peak,
        "features": sum(r.features.nbytes for r in results),
        "gradient_values": sum(r.gradient_values.nbytes for r in results),
        "gradient_pairs": sum(r.gradient_pairs.nbytes for r in results),
        "n_pairs": sum(len(r.gradient_pairs) for r in results),
        "dense": sum(len(r.centers) * r.n_atoms * 3 * r.n_features * 8 for r in results),
    }


@contextmanager
def stage_clock() -> Iterator[dict[str, float]]:
    """Accumulate the time atomdesc spends in each stage of a computation.

    Wraps the internals the ACSF plugin calls (the pair search: vesin's, or every
    pair within each small molecule; the
    rest of the neighbour list, the gradient slots, the Fortran kernel);
    whatever is left of the total is Python-side validation and result
    assembly. Only for this report: it breaks when those internals move.
    """
    import vesin

    import atomdesc.kernel_inputs as kernel_inputs
    import atomdesc.neighbours as neighbours
    import atomdesc.plugins.acsf as acsf_plugin

    clock: dict[str, float] = defaultdict(float)

    def timed(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                clock[stage] += time.perf_counter() - started
        return wrapper

    # the kernel module with its acsf routine timed (the neighbour routines untouched)
    real = acsf_plugin.kernels.fortran
    fortran = SimpleNamespace(**{name: getattr(real, name) for name in dir(real)
                                 if not name.startswith("_")})
    fortran.acsf = timed("kernel", real.acsf)
    with ExitStack() as stack:
        patch = stack.enter_context
        patch(mock.patch.object(vesin.NeighborList, "compute",
                                timed("search", vesin.NeighborList.compute)))
        patch(mock.patch.object(neighbours, "_pairs_within_fragments",
                                timed("search", neighbours._pairs_within_fragments)))
        patch(mock.patch.object(kernel_inputs, "compute_neighbours",
                                timed("neighbours", kernel_inputs.compute_neighbours)))
        patch(mock.patch.object(kernel_inputs, "gradient_slots",
                                timed("slots", kernel_inputs.gradient_slots)))
        patch(mock.patch.object(kernel_inputs.KernelNeighbours, "build",
                                staticmethod(timed("build", kernel_inputs.KernelNeighbours.build))))
        patch(mock.patch.object(acsf_plugin.kernels, "fortran", fortran))
        yield clock


def measure_stages(system: BenchSystem, gradients: bool, repeat: int) -> dict[str, float]:
    """Stage times of the fastest of ``repeat`` calls (1 thread)."""
    ad = atomdesc_acsf(system)
    best: dict[str, float] | None = None
    for _ in range(repeat):
        with stage_clock() as clock:
            started = time.perf_counter()
            ad.compute(system.inputs, gradients=gradients, n_threads=1)
            clock["total"] = time.perf_counter() - started
        if best is None or clock["total"] < best["total"]:
            best = dict(clock)
    assert best is not None
    return {
        "load": load_average(),
        "total": best["total"],
        "neighbour search (vesin or all pairs)": best.get("search", 0.0),
        "neighbour post-processing": best["neighbours"] - best.get("search", 0.0),
        "gradient slots": best.get("slots", 0.0),
        "species + checks": best["build"] - best["neighbours"] - best.get("slots", 0.0),
        "Fortran kernel": best["kernel"],
        "other Python": best["total"] - best["build"] - best["kernel"],
    }


# ------------------------------------------------------------------ report


def run(args: argparse.Namespace, report: Report) -> None:
    try:
        import dscribe  # noqa: F401
    except ImportError:
        sys.exit("the ACSF benchmark needs DScribe: pip install dscribe==2.1.2")
    systems = [SYSTEMS[key]() for key in args.systems]

    report.heading(2, "ACSF: atomdesc vs DScribe")
    report.add("Command: `python tests/benchmarks/benchmark.py " + " ".join(sys.argv[1:]) + "`")
    report.add()
    for line in machine_lines(["atomdesc", "dscribe", "numpy", "ase", "vesin"]):
        report.add(line)
    report.add(f"- repeats per timing: {args.repeat}; times are best of the repeats "
               "(median in brackets); ratios use the best times")
    report.add("- load: the highest 1-minute load average seen while a row was measured. The "
               "benchmark itself adds about 1 (about 2 while it runs 2 threads); more than "
               "that means other processes competed for the cores")
    report.add()
    report.add(f"Hyper-parameters: r_cut = {R_CUT} Å, cosine cutoff; "
               f"G2 (eta, r_s) = {[p[0] for p in G2_PARAMS]} Å⁻² with r_s = 0; "
               f"G4 (eta, zeta, lambda) = {[tuple(p) for p in G4_PARAMS]}.")

    report.heading(3, "Systems")
    rows = [[system.title, system.n_atoms, " ".join(system.species),
             atomdesc_acsf(system).n_features, f"{neighbours_per_centre(system):.1f}"]
            for system in systems]
    report.table(["system", "atoms", "species", "features", "neighbours per centre"], rows)

    measured = []
    for system in systems:
        wait_for_quiet(args.max_load, args.max_wait)
        print(f"... measuring {system.key}", file=sys.stderr, flush=True)
        measured.append(measure_system(system, args))

    report.heading(3, "(a) Features only, 1 thread")
    rows = []
    for m in measured:
        t, n = m["times"], m["system"].n_atoms
        a, d = t["atomdesc"], t["dscribe"]
        rows.append([
            m["system"].key, f"{fmt_time(a.best)} ({fmt_time(a.median)})",
            f"{fmt_time(d.best)} ({fmt_time(d.median)})",
            fmt_rate(n / a.best), fmt_rate(n / d.best),
            f"**{fmt_ratio(d.best / a.best)}**", fmt_ratio(d.median / a.median),
            f"{m['feature_diff']:.1e}", f"{max(a.load, d.load):.2f}",
        ])
    report.table(["system", "atomdesc", "DScribe", "atomdesc atoms/s", "DScribe atoms/s",
                  "speed-up", "speed-up (medians)", "max rel. diff", "load"], rows)
    report.add("Max rel. diff: max |atomdesc − DScribe| / max |DScribe| over all features "
               "(same hyper-parameters, same columns).")

    report.heading(3, "(b) Features + position gradients, 1 thread")
    rows = []
    for m in measured:
        t = m["times"]
        ag, a, d = t["atomdesc_grad"], t["atomdesc"], t["dscribe"]
        dscribe_total = m["numerical_full"] + d.best
        rows.append([
            m["system"].key, f"{fmt_time(ag.best)} ({fmt_time(ag.median)})",
            fmt_time(m["numerical_full"]), m["numerical_how"], fmt_time(dscribe_total),
            f"**{fmt_ratio(dscribe_total / ag.best)}**", fmt_ratio(ag.best / d.best),
            fmt_ratio(ag.best / a.best), f"{m['gradient_diff']:.1e}",
            f"{max(ag.load, m['numerical'].load):.2f}",
        ])
    report.table(["system", "atomdesc analytic", "DScribe numerical", "how DScribe was measured",
                  "DScribe features + numerical", "speed-up", "atomdesc f+g / DScribe f",
                  "atomdesc f+g / atomdesc f", "max rel. diff", "load"], rows)
    report.add("Speed-up = (DScribe numerical derivatives + DScribe features) / atomdesc "
               "`compute(gradients=True)`. Max rel. diff compares atomdesc's analytic "
               "gradients with DScribe's central differences (h = 1e-4 Å) on the centres "
               "DScribe ran.")

    thread_results = {}
    if len(args.threads) > 1:
        report.heading(3, f"(c) atomdesc threads: {' vs '.join(map(str, args.threads))}")
        rows = []
        base = args.threads[0]
        for system in systems:
            if system.key not in THREAD_SYSTEMS:
                continue
            wait_for_quiet(args.max_load, args.max_wait)
            times = measure_threads(system, args.threads, args)
            thread_results[system.key] = times
            for task in ("features", "gradients"):
                for n in args.threads[1:]:
                    t1, tn = times[f"{task}/{base}"], times[f"{task}/{n}"]
                    rows.append([
                        system.key, "features" if task == "features" else "features + gradients",
                        f"{fmt_time(t1.best)} ({fmt_time(t1.median)})", n,
                        f"{fmt_time(tn.best)} ({fmt_time(tn.median)})",
                        f"**{fmt_ratio(t1.best / tn.best)}**",
                        fmt_ratio(t1.median / tn.median), f"{max(t1.load, tn.load):.2f}",
                    ])
        report.table(["system", "task", f"time, {base} thread{'s' if base > 1 else ''}",
                      "threads", "time", "speed-up", "speed-up (medians)", "load"], rows)
        report.add("With another busy process on a 2-core machine the 2-thread speed-up is "
                   "meaningless: check the load column.")

    if not args.no_memory:
        report.heading(3, "(d) Memory of one features + gradients call (1 thread)")
        rows = []
        for system in systems:
            p = run_memory_probe("acsf", system.key)
            rows.append([
                system.key, fmt_bytes(p["rss_before"]), fmt_bytes(p["rss_peak"]),
                fmt_bytes(p["rss_peak"] - p["rss_before"]), fmt_bytes(p["traced_peak"]),
                f"{fmt_bytes(p['gradient_values'])} + {fmt_bytes(p['gradient_pairs'])}",
                f"{p['n_pairs']:,}", fmt_bytes(p["dense"]),
                f"{(p['gradient_values'] + p['gradient_pairs']) / p['dense']:.3f}",
            ])
        report.table(["system", "RSS before", "peak RSS in the call", "growth",
                      "tracemalloc peak",
                      "gradient values + pairs", "(centre, atom) pairs",
                      "dense layout", "sparse / dense"], rows)
        report.add("Each row is a fresh process (interpreter, imports and structure included "
                   "in RSS before). Growth = peak RSS during the call − RSS before: the "
                   "result plus every temporary. tracemalloc counts numpy arrays only "
                   "(not Fortran-internal scratch). Dense layout = n_centres × n_atoms × 3 × "
                   "n_features × 8 B, the layout DScribe returns.")

    if not args.no_stages:
        report.heading(3, "(e) Where atomdesc's time goes (1 thread, fastest call)")
        try:
            stage_table(systems, args, report)
        except (AttributeError, KeyError) as exc:  # the internals it wraps moved on
            report.add(f"Stage timing unavailable ({type(exc).__name__}: {exc}): "
                       "`stage_clock` needs updating to the current internals.")

    report.heading(3, "Goals")
    add_goals(report, measured, thread_results, args.threads)
    report.goal_table()


def stage_table(systems: list[BenchSystem], args: argparse.Namespace, report: Report) -> None:
    rows = []
    names: list[str] = []
    for system in systems:
        wait_for_quiet(args.max_load, args.max_wait)
        for gradients in (False, True):
            stages = measure_stages(system, gradients, args.repeat)
            names = [s for s in stages if s not in ("total", "load")]
            total = stages["total"]
            rows.append([system.key, "features + gradients" if gradients else "features",
                         fmt_time(total)]
                        + [f"{fmt_time(stages[s])} ({100 * stages[s] / total:.0f}%)"
                           for s in names]
                        + [f"{stages['load']:.2f}"])
    report.table(["system", "task", "total"] + names + ["load"], rows)
    report.add("Stages: the pair search (vesin's half list, or every pair within each "
               "molecule for small molecules); its checks and expansion "
               "into per-centre lists (`compute_neighbours` minus the search, mostly the "
               "Fortran `half_to_full`); the (centre, atom) gradient slots; "
               "species lookup and index checks (the rest of `KernelNeighbours.build`); the "
               "Fortran kernel; everything else (input validation, batching of molecules, "
               "result assembly).")


def add_goals(report: Report, measured: list[dict[str, Any]],
              thread_results: dict[str, Any], threads: list[int]) -> None:
    def worst(values: dict[str, float], lowest: bool = True) -> tuple[str, float]:
        key = (min if lowest else max)(values, key=values.get)
        return key, values[key]

    speed = {m["system"].key: m["times"]["dscribe"].best / m["times"]["atomdesc"].best
             for m in measured}
    key, value = worst(speed)
    report.goal(Goal("features: DScribe / atomdesc", f"≥ {GOAL_FEATURES:g}×", fmt_ratio(value),
                     value >= GOAL_FEATURES, f"all systems (worst: {key})"))

    grads = {m["system"].key: (m["numerical_full"] + m["times"]["dscribe"].best)
             / m["times"]["atomdesc_grad"].best for m in measured if m["system"].periodic}
    if grads:
        key, value = worst(grads)
        report.goal(Goal("gradients: DScribe numerical / atomdesc analytic",
                         f"≥ {GOAL_GRADIENTS:g}×", fmt_ratio(value), value >= GOAL_GRADIENTS,
                         f"periodic systems (worst: {key})"))

    overhead = {m["system"].key: m["times"]["atomdesc_grad"].best / m["times"]["dscribe"].best
                for m in measured}
    key, value = worst(overhead, lowest=False)
    report.goal(Goal("atomdesc features+gradients / DScribe features", f"< {GOAL_OVERHEAD:g}",
                     fmt_ratio(value), value < GOAL_OVERHEAD, f"all systems (worst: {key})"))

    if thread_results and len(threads) > 1:
        scaling = {}
        for key, times in thread_results.items():
            for task in ("features", "gradients"):
                scaling[f"{key} {task}"] = (times[f"{task}/{threads[0]}"].best
                                            / times[f"{task}/{threads[1]}"].best)
        key, value = worst(scaling)
        report.goal(Goal(f"atomdesc {threads[1]} threads / {threads[0]}", f"≥ {GOAL_THREADS:g}×",
                         fmt_ratio(value), value >= GOAL_THREADS,
                         f"{', '.join(THREAD_SYSTEMS)} (worst: {key})"))
