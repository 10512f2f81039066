"""The two builds of the kernels, baseline (x86-64, SSE2) and x86-64-v3 (AVX2, FMA), side by side.

Usage (from the repository root, atomdesc installed on an x86-64-v3 CPU)::

    python tests/benchmarks/kernel_variants.py                   # every system, ACSF and SOAP
    python tests/benchmarks/kernel_variants.py --quick           # smoke run
    python tests/benchmarks/kernel_variants.py --systems water192 --families soap --repeat 9

Both extension modules are loaded into one process and every call is made
through the public API (``Descriptor.compute``, 1 thread) with
``atomdesc.kernels.fortran`` pointed at one variant or the other; the two
variants of a case are timed in round robin (``time_interleaved``), so a burst
of load from other processes hits both alike; by default in CPU time of the
process (``--clock wall`` for wall time), which other processes disturb less. The ACSF and SOAP
hyper-parameters are those of the peer benchmarks (``acsf_cases``,
``soap_cases``: SOAP with the default convention and the shifted-cosine cutoff).
The report also gives the largest difference between the variants' results,
relative to the largest value of each array.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from atomdesc import kernels
from benchmark import fmt_ratio, fmt_time, machine_lines, time_interleaved
from systems import DEFAULT_SYSTEMS, SYSTEMS, BenchSystem

import acsf_cases  # noqa: E402  (after benchmark: both are siblings on sys.path)
import soap_cases

FAMILIES: dict[str, Callable[[BenchSystem], Any]] = {
    "acsf": acsf_cases.atomdesc_acsf,
    "soap": lambda system: soap_cases.ours(system, "atomdesc"),
}
MODES = {"features": False, "features+gradients": True}
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def with_variant(variant: str, call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` with every kernel call of the built-in families going to ``variant``."""
    fortran = kernels.load(variant).kernels

    def run() -> Any:
        chosen = kernels.fortran
        kernels.fortran = fortran
        try:
            return call()
        finally:
            kernels.fortran = chosen
    return run


def max_relative_difference(a: Any, b: Any) -> float:
    """Largest |a - b| over features and gradient values, relative to each array's largest |a|."""
    worst = 0.0
    for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        for name in ("features", "gradient_values"):
            u, v = getattr(x, name), getattr(y, name)
            if u is not None and u.size and np.abs(u).max() > 0:
                worst = max(worst, float(np.abs(u - v).max() / np.abs(u).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS),
                        default=list(DEFAULT_SYSTEMS))
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--repeat", type=int, default=7, help="samples per variant (best kept)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="cpu",
                        help="CPU time of this process (default: steadier on a busy machine; "
                        "the calls run one thread) or wall time")
    parser.add_argument("--quick", action="store_true", help="3 samples of >= 0.05 s")
    args = parser.parse_args(argv)
    repeat, min_sample = (3, 0.05) if args.quick else (args.repeat, 0.3)

    available = kernels.available()
    if "v3" not in available or not kernels.cpu_supports_v3():
        print(f"needs both variants and an x86-64-v3 CPU; built: {available}, "
              f"CPU has x86-64-v3: {kernels.cpu_supports_v3()}", file=sys.stderr)
        return 1
    print(f"Command: `python tests/benchmarks/kernel_variants.py {' '.join(sys.argv[1:])}`".rstrip())
    print()
    for line in machine_lines(["numpy"]):
        print(line)
    print(f"- kernel variant chosen at import: {kernels.VARIANT}; {args.clock} time, "
          f"best (median) of {repeat} samples")
    print()
    print("| system | family | computed | baseline | v3 | baseline / v3 | max rel. diff | load |")
    print("|---|---|---|---|---|---|---|---|")
    for key in args.systems:
        system = SYSTEMS[key]()
        for family in args.families:
            descriptor = FAMILIES[family](system)
            for mode, gradients in MODES.items():
                def call(gradients: bool = gradients) -> Any:
                    return descriptor.compute(system.inputs, gradients=gradients, n_threads=1)

                calls = {v: with_variant(v, call) for v in ("baseline", "v3")}
                diff = max_relative_difference(calls["baseline"](), calls["v3"]())
                t = time_interleaved(calls, repeat, min_sample, CLOCKS[args.clock])
                base, v3 = t["baseline"], t["v3"]
                print(f"| {key} | {family} | {mode} | {fmt_time(base.best)} ({fmt_time(base.median)})"
                      f" | {fmt_time(v3.best)} ({fmt_time(v3.median)}) | "
                      f"{fmt_ratio(base.best / v3.best)} | {diff:.1e} | "
                      f"{max(base.load, v3.load):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
