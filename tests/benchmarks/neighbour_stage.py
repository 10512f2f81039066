"""The neighbour stage and whole ``compute`` calls of two revisions, side by side in one process.

Usage (from the repository root)::

    python tests/benchmarks/neighbour_stage.py --old 446f110
    python tests/benchmarks/neighbour_stage.py --old 446f110 --threads 2 --repeat 21

Instruction counts, for a machine too busy for wall-clock times: ``--marks N``
runs every callable N times, each case in its own callgrind dump, and
``--read`` turns the dumps into the same table::

    valgrind --tool=callgrind --dump-before='os_getppid*' --callgrind-out-file=cg.si512 \
        python tests/benchmarks/neighbour_stage.py --old 446f110 --systems si512 --marks 3
    python tests/benchmarks/neighbour_stage.py --read cg.si512 --marks 3

The installed atomdesc is the "new" side. The "old" side is ``neighbours.py``,
``kernel_inputs.py`` and the ACSF and SOAP plugins of a git revision (or of a
checkout, given as a folder), loaded into this process under other module names; both sides then call the
same compiled kernels (valid while the kernels' interfaces did not change in
between). Stages, each with the old and the new code:

* ``neighbours``: ``compute_neighbours`` of every atom (ACSF cutoff);
* ``build``: ``KernelNeighbours.build`` with gradient slots (neighbours, species,
  slots and checks: everything before the ACSF kernel);
* ``acsf``, ``acsf+grad``, ``soap``: public ``compute`` calls (the benchmark
  hyper-parameters of ``acsf_cases.py`` and ``soap_cases.py``; SOAP features only).

All callables are timed in turn (round robin), ``--repeat`` rounds, and the best
time of each is kept; the 1-minute load average is printed around each system.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import acsf_cases  # noqa: E402
import soap_cases  # noqa: E402
import systems  # noqa: E402
from revisions import load  # noqa: E402

import atomdesc  # noqa: E402
from atomdesc import kernel_inputs, neighbours  # noqa: E402
from atomdesc.system import System, merge_molecules  # noqa: E402


def best_of(cases: dict, repeat: int) -> dict[str, float]:
    best = {name: float("inf") for name in cases}
    for _ in range(repeat):
        for name, call in cases.items():
            started = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", help="git revision (or checkout folder) of the old side")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--systems", nargs="+", default=list(systems.DEFAULT_SYSTEMS),
                        choices=list(systems.SYSTEMS))
    parser.add_argument("--marks", type=int, default=0,
                        help="run each callable this many times between os.getppid() marks "
                             "(for callgrind's --dump-before) instead of timing it")
    parser.add_argument("--read", type=Path,
                        help="callgrind output of a --marks run (one system): print the table")
    args = parser.parse_args()
    if args.read:
        read_marks(args.read, args.marks)
        return
    if args.old is None:
        parser.error("--old is required")

    old_nb = load(args.old, "pkg/atomdesc/neighbours.py", "atomdesc._old_neighbours", {})
    old_ki = load(args.old, "pkg/atomdesc/kernel_inputs.py", "atomdesc._old_kernel_inputs",
                  {"atomdesc.neighbours": old_nb})
    old_acsf = load(args.old, "plugins/acsf.py", "atomdesc._old_acsf",
                    {"atomdesc.kernel_inputs": old_ki})
    old_soap = load(args.old, "plugins/soap.py", "atomdesc._old_soap",
                    {"atomdesc.kernel_inputs": old_ki})

    nt = args.threads
    print(f"threads: {nt}; rounds: {args.repeat}; best of each")
    print("| system | stage | old | new | old / new | load |")
    print("|---|---|---|---|---|---|")
    for key in args.systems:
        bench = systems.SYSTEMS[key]()
        if bench.is_list:
            system = merge_molecules(bench.structures)
        else:
            system = System.from_atoms(bench.structures[0])
        centers = np.arange(len(system), dtype=np.int64)
        r_cut, species, inputs = acsf_cases.R_CUT, bench.species, bench.inputs
        acsf_kw = dict(species=species, r_cut=r_cut, g2_params=acsf_cases.G2_PARAMS,
                       g4_params=acsf_cases.G4_PARAMS, cutoff="cosine")
        soap_kw = dict(species=species, r_cut=soap_cases.R_CUT, n_max=soap_cases.N_MAX,
                       l_max=soap_cases.L_MAX, sigma=soap_cases.SIGMA,
                       cutoff={"name": "shifted_cosine", "width": soap_cases.WIDTH})
        new_acsf, o_acsf = atomdesc.descriptor("acsf", **acsf_kw), old_acsf.ACSF(**acsf_kw)
        new_soap, o_soap = atomdesc.descriptor("soap", **soap_kw), old_soap.SOAP(**soap_kw)
        cases = {
            "old neighbours": lambda: old_nb.compute_neighbours(system, r_cut, centers),
            "new neighbours": lambda: neighbours.compute_neighbours(system, r_cut, centers,
                                                                    n_threads=nt),
            "old build": lambda: old_ki.KernelNeighbours.build(system, r_cut, centers,
                                                               species, True),
            "new build": lambda: kernel_inputs.KernelNeighbours.build(system, r_cut, centers,
                                                                      species, True, nt),
            "old acsf": lambda: o_acsf.compute(inputs, n_threads=nt),
            "new acsf": lambda: new_acsf.compute(inputs, n_threads=nt),
            "old acsf+grad": lambda: o_acsf.compute(inputs, gradients=True, n_threads=nt),
            "new acsf+grad": lambda: new_acsf.compute(inputs, gradients=True, n_threads=nt),
            "old soap": lambda: o_soap.compute(inputs, n_threads=nt),
            "new soap": lambda: new_soap.compute(inputs, n_threads=nt),
        }
        for call in cases.values():
            call()  # warm-up
        if args.marks:
            print(f"cases: {list(cases)}")
            for call in cases.values():
                os.getppid()  # callgrind dumps the counts so far: one file per case
                for _ in range(args.marks):
                    call()
            os.getppid()
            continue
        load_before = os.getloadavg()[0]
        best = best_of(cases, args.repeat)
        load_avg = f"{load_before:.2f}–{os.getloadavg()[0]:.2f}"
        for stage in [name[4:] for name in cases if name.startswith("old ")]:
            old, new = best["old " + stage], best["new " + stage]
            print(f"| {key} | {stage} | {fmt(old)} | {fmt(new)} | {old / new:.2f}× | {load_avg} |",
                  flush=True)


STAGES = ("neighbours", "build", "acsf", "acsf+grad", "soap")


def read_marks(out: Path, marks: int) -> None:
    """Instructions per call of each case from the dumps OUT.2, OUT.3, ... (OUT.1 is setup)."""
    print("| stage | old | new | old / new |")
    print("|---|---|---|---|")
    per_call = []
    for k in range(2 * len(STAGES)):
        text = Path(f"{out}.{k + 2}").read_text()
        totals = next(line for line in text.splitlines() if line.startswith("totals:"))
        per_call.append(int(totals.split()[1]) / max(marks, 1))
    for k, stage in enumerate(STAGES):
        old, new = per_call[2 * k], per_call[2 * k + 1]
        print(f"| {stage} | {old / 1e6:.2f} M | {new / 1e6:.2f} M | {old / new:.2f}× |")


if __name__ == "__main__":
    main()
