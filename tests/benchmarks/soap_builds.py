"""Two builds of atomdesc side by side: SOAP CPU time per call, one thread.

Each build is an interpreter with its own atomdesc installed (e.g. two virtual environments,
``pip install --no-build-isolation .`` of two checkouts). The builds run in turn, a fresh
process per build per round, and each call's CPU time (``time.process_time``) is the best of
3; the table gives the best over the rounds::

    python tests/benchmarks/soap_builds.py /tmp/venv-old/bin/python /tmp/venv-new/bin/python \\
        --systems si512 water192 cuau864 g2 --rounds 4

Convention ``featomic`` with the hyper-parameters of the SOAP benchmark (``soap_cases.py``);
``--family bispectrum`` (or ``spherical_expansion``) takes that family with the same cutoff
and density and the basis of ``--n-max`` and ``--l-max`` (the bispectrum's features grow as
(n_max (l_max + 1))^3)::

    python tests/benchmarks/soap_builds.py OLD/bin/python NEW/bin/python --family bispectrum \
        --n-max 4 --l-max 4 --systems si512 water192 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CALLS = {"features": {}, "+ gradients": {"gradients": True},
         "+ gradients + strain": {"gradients": True, "strain_gradients": True}}


def child(args: argparse.Namespace) -> None:
    """Time every call of every system with the atomdesc of this interpreter; print JSON."""
    sys.path.insert(0, str(HERE))
    import soap_cases
    from systems import SYSTEMS

    out = {}
    for key in args.systems:
        system = SYSTEMS[key]()
        n_max, l_max = ((soap_cases.N_MAX, soap_cases.L_MAX) if args.family == "soap"
                        else (args.n_max, args.l_max))
        descriptor = soap_cases.ours(system, "featomic", args.family, n_max, l_max)
        for name, options in CALLS.items():
            best = float("inf")
            for _ in range(3):
                started = time.process_time()
                result = descriptor.compute(system.inputs, n_threads=1, **options)
                best = min(best, time.process_time() - started)
                del result
            out[f"{key}|{name}"] = best
    print(json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pythons", nargs=2, metavar="PYTHON", help="interpreters: before, after")
    parser.add_argument("--systems", nargs="+", default=["si512", "water192", "cuau864", "g2"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--family", choices=["soap", "bispectrum", "spherical_expansion"],
                        default="soap")
    parser.add_argument("--n-max", type=int, default=4, help="not for soap (the benchmark's 8)")
    parser.add_argument("--l-max", type=int, default=4, help="not for soap (the benchmark's 6)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    best: list[dict[str, float]] = [{}, {}]
    for _ in range(args.rounds):
        for which, python in enumerate(args.pythons):
            done = subprocess.run(
                [python, __file__, *args.pythons, "--child", "--systems", *args.systems,
                 "--family", args.family, "--n-max", str(args.n_max), "--l-max", str(args.l_max)],
                capture_output=True, text=True, env=env, cwd="/", check=True)
            times = json.loads(done.stdout.strip().splitlines()[-1])
            for key, seconds in times.items():
                best[which][key] = min(best[which].get(key, seconds), seconds)
    print("| system | call | before | after | change |\n|---|---|---|---|---|")
    for key, before in best[0].items():
        after = best[1][key]
        system, call = key.split("|")
        print(f"| {system} | {call} | {before * 1e3:.1f} ms | {after * 1e3:.1f} ms "
              f"| {100 * (after / before - 1):+.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
