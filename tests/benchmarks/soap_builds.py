"""Two builds of atomdesc side by side: SOAP CPU time per call, one thread.

Each build is an interpreter with its own atomdesc installed (e.g. two virtual environments,
``pip install --no-build-isolation .`` of two checkouts). The builds run in turn, a fresh
process per build per round, and each call's CPU time (``time.process_time``) is the best of
3; the table gives the best over the rounds::

    python tests/benchmarks/soap_builds.py /tmp/venv-old/bin/python /tmp/venv-new/bin/python \\
        --systems si512 water192 cuau864 g2 --rounds 4

Convention ``featomic`` with the hyper-parameters of the SOAP benchmark (``soap_cases.py``).
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


def child(systems: list[str]) -> None:
    """Time every call of every system with the atomdesc of this interpreter; print JSON."""
    sys.path.insert(0, str(HERE))
    import soap_cases
    from systems import SYSTEMS

    out = {}
    for key in systems:
        system = SYSTEMS[key]()
        descriptor = soap_cases.ours(system, "featomic")
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
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.systems)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    best: list[dict[str, float]] = [{}, {}]
    for _ in range(args.rounds):
        for which, python in enumerate(args.pythons):
            done = subprocess.run(
                [python, __file__, *args.pythons, "--child", "--systems", *args.systems],
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
