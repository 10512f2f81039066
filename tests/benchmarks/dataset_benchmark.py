"""Benchmark of the dataset pipeline (``atomdesc.featurize_dataset``).

1. Overhead: the pipeline (lazy reading, chunking, zarr store, progress
   record) against the bare loop a user would write (``ase.io.read`` of every
   frame, then ``Descriptor.compute`` on the list, results kept in memory), on
   the bundled example structures with the bundled ACSF hyper-parameters.
   Runs are interleaved and repeated; medians are reported, wall and CPU time.
2. Memory: peak resident memory of a fresh process featurizing synthetic
   extxyz datasets of growing size (up to >= 100 000 atoms). Flat means the
   pipeline holds a bounded number of chunks whatever the dataset size.

Run: ``python tests/benchmarks/dataset_benchmark.py [--repeats 7] [--sizes 10000,50000,200000]
[--gradient-sizes 10000,50000]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _bare(path: Path, d, gradients: bool) -> None:
    import ase.io

    frames = ase.io.read(path, ":")
    d.compute(frames, gradients=gradients)


def _pipeline(path: Path, d, gradients: bool, out: Path) -> None:
    import atomdesc

    shutil.rmtree(out, ignore_errors=True)
    atomdesc.featurize_dataset(path, d, out, gradients=gradients, progress=False)


def overhead(repeats: int) -> dict:
    import atomdesc
    from atomdesc import examples

    d = atomdesc.descriptor_from_hypers(json.loads(examples.ACSF_N2P2.read_text()))
    out = Path(tempfile.mkdtemp()) / "bench.zarr"
    rows = {}
    for gradients in (False, True):
        # warm up both paths (imports, page cache, thread pools)
        _bare(examples.STRUCTURES, d, gradients)
        _pipeline(examples.STRUCTURES, d, gradients, out)
        times: dict[str, list[float]] = {"bare": [], "pipeline": [], "bare_cpu": [],
                                         "pipeline_cpu": []}
        for _ in range(repeats):
            for name, run in (("bare", lambda: _bare(examples.STRUCTURES, d, gradients)),
                              ("pipeline", lambda: _pipeline(examples.STRUCTURES, d,
                                                             gradients, out))):
                c0, t0 = time.process_time(), time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
                times[name + "_cpu"].append(time.process_time() - c0)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows["gradients" if gradients else "features"] = {
            **{k: round(v, 4) for k, v in med.items()},
            "overhead_wall": round(med["pipeline"] / med["bare"] - 1, 3),
            "overhead_cpu": round(med["pipeline_cpu"] / med["bare_cpu"] - 1, 3),
        }
    shutil.rmtree(out.parent, ignore_errors=True)
    return rows


_CHILD = r"""
import json, resource, sys, time, atomdesc
from atomdesc import examples
d = atomdesc.descriptor_from_hypers(json.loads(examples.ACSF_N2P2.read_text()))
t = time.perf_counter()
s = atomdesc.featurize_dataset(sys.argv[1], d, sys.argv[2], gradients=sys.argv[3] == "1",
                               progress=False)
print(json.dumps({"seconds": time.perf_counter() - t, "atoms": s.atoms,
                  "structures": s.structures,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_dataset(path: Path, n_atoms: int) -> None:
    """Repeat the example structures (with fresh rattles) up to ``n_atoms`` atoms."""
    import ase.io
    import numpy as np
    from atomdesc import examples

    base = ase.io.read(examples.STRUCTURES, ":")
    rng = np.random.default_rng(0)
    total = 0
    with open(path, "w") as f:
        while total < n_atoms:
            for atoms in base:
                a = atoms.copy()
                a.positions += rng.normal(scale=0.01, size=a.positions.shape)
                ase.io.write(f, a, format="extxyz")
                total += len(a)
                if total >= n_atoms:
                    break


def memory(sizes: list[int], gradients: bool) -> list[dict]:
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for n in sizes:
        data = tmp / f"data_{n}.extxyz"
        make_dataset(data, n)
        out = tmp / f"out_{n}.zarr"
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(data), str(out),
                               "1" if gradients else "0"],
                              capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout)
        row["gradients"] = gradients
        row["input_mb"] = round(data.stat().st_size / 2**20, 1)
        row["store_mb"] = round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
                                / 2**20, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(out)
        data.unlink()
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="10000,50000,200000",
                        help="dataset sizes in atoms for the memory test")
    parser.add_argument("--gradient-sizes", default="10000,50000",
                        help="dataset sizes in atoms for the memory test with gradients")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    import atomdesc

    print(f"atomdesc {atomdesc.__version__}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    if not args.skip_overhead:
        print(json.dumps({"overhead": overhead(args.repeats)}, indent=1), flush=True)
    if not args.skip_memory:
        memory([int(n) for n in args.sizes.split(",")], gradients=False)
        memory([int(n) for n in args.gradient_sizes.split(",")], gradients=True)


if __name__ == "__main__":
    main()
