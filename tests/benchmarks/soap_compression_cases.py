"""SOAP species compression: atomdesc against DScribe 2.1 for each compression mode.

The hyper-parameters of the SOAP benchmark (``soap_cases``), ``convention="dscribe"``
on one side and DScribe's ``SOAP(compression={"mode": ...})`` on the other, the values
compared before timing. Features at one thread (``n_jobs=1``), interleaved round robin,
and atomdesc's features + position gradients (DScribe has analytic ones for none of the
periodic systems and for neither ``mu2`` nor ``mu1nu1``).
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np

import atomdesc
from benchmark import (
    Report,
    as_list,
    fmt_ratio,
    fmt_time,
    machine_lines,
    time_interleaved,
    wait_for_quiet,
)
from soap_cases import L_MAX, N_MAX, R_CUT, SIGMA, available
from systems import SYSTEMS, BenchSystem

DESCRIPTION = ("SOAP compression modes: atomdesc vs DScribe 2.1 (off, mu2, mu1nu1, crossover; "
               "pip install dscribe==2.1.2)")
MODES = ("off", "mu2", "mu1nu1", "crossover")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=["g2", "cuau864"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))


def measure(system: BenchSystem, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from dscribe.descriptors import SOAP

    common = dict(species=system.species, r_cut=R_CUT, n_max=N_MAX, l_max=L_MAX, sigma=SIGMA,
                  rbf="gto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DScribe's notes on the sparse output
        theirs = SOAP(**common, periodic=system.periodic, compression={"mode": mode})
    ours = atomdesc.descriptor("soap", **common, convention="dscribe", compression=mode)
    x = system.inputs
    mine = [r.features for r in as_list(ours.compute(x, n_threads=1))]
    reference = as_list(theirs.create(x, n_jobs=1))
    difference = max(float(np.abs(a - b).max()) for a, b in zip(mine, reference)) / max(
        float(np.abs(b).max()) for b in reference)
    times = time_interleaved({
        "dscribe": lambda: theirs.create(x, n_jobs=1),
        "atomdesc": lambda: ours.compute(x, n_threads=1),
        "atomdesc+grad": lambda: ours.compute(x, gradients=True, n_threads=1),
    }, args.repeat, 0.05 if args.quick else 0.3)
    return {"n_features": ours.n_features, "difference": difference,
            "times": {k: v.best for k, v in times.items()},
            "load": max(v.load for v in times.values())}


def run(args: argparse.Namespace, report: Report) -> None:
    report.heading(1, "SOAP compression modes: atomdesc vs DScribe")
    for line in machine_lines(["numpy", "dscribe"]):
        report.add(line)
    report.add(f"- r_cut {R_CUT} Å, n_max {N_MAX}, l_max {L_MAX}, σ {SIGMA} Å, GTO, "
               f"convention dscribe; best of {args.repeat} interleaved samples, one thread")
    why = available("dscribe")
    if why is not None:
        report.add(f"- dscribe not available: {why}")
        return
    rows = []
    for key in args.systems:
        system = SYSTEMS[key]()
        for mode in args.modes:
            wait_for_quiet(args.max_load, args.max_wait)
            res = measure(system, mode, args)
            t = res["times"]
            rows.append([key, mode, f"{res['n_features']:,}", fmt_time(t["dscribe"]),
                         fmt_time(t["atomdesc"]), fmt_ratio(t["dscribe"] / t["atomdesc"]),
                         fmt_time(t["atomdesc+grad"]), f"{res['difference']:.1e}",
                         f"{res['load']:.2f}"])
    report.add()
    report.table(["system", "compression", "features", "DScribe", "atomdesc", "ratio",
                  "atomdesc + gradients", "max rel. diff", "load"], rows)


def memory_probe(key: str) -> dict[str, Any]:
    raise NotImplementedError("the compression benchmark has no memory table")
