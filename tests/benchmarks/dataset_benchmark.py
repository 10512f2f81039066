"""Benchmark of the dataset pipeline (``atomdesc.featurize_dataset``).

1. Overhead: the pipeline (lazy reading, chunking, zarr store, progress
   record) against the bare loop a user would write (``ase.io.read`` of every
   frame, then ``Descriptor.compute`` on the list, results kept in memory), on
   the bundled example structures with the bundled ACSF hyper-parameters.
   Runs are interleaved and repeated; medians and bests are reported, wall
   and CPU time.
2. Memory: peak resident memory of a fresh process featurizing synthetic
   extxyz datasets of growing size (up to >= 100 000 atoms). Flat means the
   pipeline holds a bounded number of chunks whatever the dataset size.

Run: ``python tests/benchmarks/dataset_benchmark.py [--repeats 15]
[--sizes 10000,100000,200000,400000] [--gradient-sizes 10000,100000,200000]``
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


def _bare(path: Path, d, gradients: bool, format: str | None = None) -> None:
    import ase.io

    frames = ase.io.read(path, ":", format=format)
    d.compute(frames, gradients=gradients)


def _pipeline(path: Path, d, gradients: bool, out: Path, compressor="blosc",
              featurize=None) -> None:
    import atomdesc

    (featurize or atomdesc.featurize_dataset)(path, d, out, gradients=gradients,
                                              progress=False, compressor=compressor)


def load_baseline(rev: str):
    """``featurize_dataset`` of pipeline.py, store.py and rowarrays.py as they are at git ``rev``.

    The rest of atomdesc (descriptors, kernels, reading) is the current one,
    so a side-by-side run measures only what changed in the pipeline.
    """
    from revisions import load

    rowarrays = load(rev, "pkg/atomdesc/rowarrays.py", "atomdesc._baseline_rowarrays", {})
    store = load(rev, "pkg/atomdesc/store.py", "atomdesc._baseline_store",
                 {"atomdesc.rowarrays": rowarrays})
    pipeline = load(rev, "pkg/atomdesc/pipeline.py", "atomdesc._baseline_pipeline",
                    {"atomdesc.store": store})
    return pipeline.featurize_dataset


#: (name, gradients, compressor) of the overhead runs.
CASES = [("features", False, "blosc"), ("gradients", True, "blosc"),
         ("gradients, uncompressed", True, None)]


def overhead(repeats: int, baseline: str | None = None, path: Path | None = None,
             cases: list | None = None) -> dict:
    """Medians of interleaved runs: the bare loop, the pipeline (and a baseline's).

    What each side includes: the bare loop reads every frame with
    ``ase.io.read`` and computes them with one ``d.compute(list)``, results
    left in memory; the pipeline reads the same file frame by frame (ASE),
    computes the same way chunk by chunk and writes the store (creation,
    appends, progress records, trimming). Both run in this warmed-up process
    (imports, zarr included, done); deleting the previous store is outside
    the timed region.
    """
    import atomdesc
    from atomdesc import examples

    d = atomdesc.descriptor_from_hypers(json.loads(examples.ACSF_N2P2.read_text()))
    out = Path(tempfile.mkdtemp()) / "bench.zarr"
    path = path or examples.STRUCTURES
    # The bare loop as users write it (ASE guesses the format from the file's
    # contents), and given the format the pipeline reads .xyz/.extxyz with:
    # against the latter the pipeline's overhead is its own work alone.
    from atomdesc.io import format_from_name

    fmt = format_from_name(str(path))
    sides = {"bare": lambda g, c, f: _bare(path, d, g),
             "bare_format_given": lambda g, c, f: _bare(path, d, g, fmt),
             "pipeline": lambda g, c, f: _pipeline(path, d, g, out, c)}
    if baseline:
        before = load_baseline(baseline)
        sides["baseline"] = lambda g, c, f: _pipeline(path, d, g, out, c, before)
    rows = {}
    for case, gradients, compressor in cases or CASES:
        times: dict[str, list[float]] = {}
        for i in range(repeats + 1):  # the first round warms up
            for name, run in sides.items():
                shutil.rmtree(out, ignore_errors=True)
                c0, t0 = time.process_time(), time.perf_counter()
                run(gradients, compressor, None)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                if i:
                    times.setdefault(name, []).append(wall)
                    times.setdefault(name + "_cpu", []).append(cpu)
        # medians, and the best of the rounds (on a loaded machine the least disturbed)
        med = {k: statistics.median(v) for k, v in times.items()}
        med.update({k + "_best": min(v) for k, v in times.items()})
        rows[case] = {k: round(v, 4) for k, v in med.items()}
        pipelines = [name for name in sides if not name.startswith("bare")]
        # the median of each round's own ratio: the runs of one round are seconds
        # apart, so a machine that slows down or speeds up during the benchmark
        # moves both sides of a ratio alike (the verdict uses this one)
        for name in pipelines:
            rows[case][f"overhead_wall_paired_{name}"] = round(statistics.median(
                p / b for p, b in zip(times[name], times["bare"])) - 1, 3)
        for bare in ("bare", "bare_format_given"):
            against = "" if bare == "bare" else "_vs_format_given"
            for name in pipelines:
                for stat in ("", "_best"):
                    rows[case][f"overhead_wall{stat}_{name}{against}"] = round(
                        med[name + stat] / med[bare + stat] - 1, 3)
                    rows[case][f"overhead_cpu{stat}_{name}{against}"] = round(
                        med[name + "_cpu" + stat] / med[bare + "_cpu" + stat] - 1, 3)
    shutil.rmtree(out.parent, ignore_errors=True)
    return rows


def breakdown(repeats: int) -> dict:
    """Where the pipeline's time goes with gradients: seconds inside each step.

    Compute and writing run on different threads and overlap, so the steps
    add up to more than the wall time; ``writer_cpu`` is the CPU time of the
    writer's work alone (the same chunks written to a fresh store, serially).
    """
    import statistics
    import atomdesc
    from atomdesc import examples, pipeline, store

    d = atomdesc.descriptor_from_hypers(json.loads(examples.ACSF_N2P2.read_text()))
    out = Path(tempfile.mkdtemp()) / "bench.zarr"
    spent: dict[str, list[float]] = {}
    wrapped = [(pipeline, "compute_chunk"), (store.StoreWriter, "create"),
               (store.StoreWriter, "append"), (store.StoreWriter, "_save_progress"),
               (store.StoreWriter, "finish")]
    originals = [getattr(owner, name) for owner, name in wrapped]
    run: dict[str, float] = {}

    def timed(name, f):
        def g(*args, **kwargs):
            t = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                run[name] = run.get(name, 0.0) + time.perf_counter() - t
        return g

    try:
        for (owner, name), f in zip(wrapped, originals):
            setattr(owner, name, timed(name, f))
        for i in range(repeats + 1):
            run.clear()
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            _pipeline(examples.STRUCTURES, d, True, out)
            run["total"] = time.perf_counter() - t
            if i:  # the first run warms up
                for k, v in run.items():
                    spent.setdefault(k, []).append(v)
    finally:
        for (owner, name), f in zip(wrapped, originals):
            setattr(owner, name, f)
    # the writer alone: the same chunks, written serially to a fresh store
    frames = [f.atoms for f in atomdesc.io.FrameSource(examples.STRUCTURES)]
    options = pipeline._check_options(d, True, False, None, None)
    size = pipeline.default_chunk_atoms(d.n_features, True, False)
    chunks = [[]]
    for a in frames:
        if chunks[-1] and sum(map(len, chunks[-1])) >= size:
            chunks.append([])
        chunks[-1].append(a)
    results = [pipeline.compute_chunk(d, c, options, 1) for c in chunks]
    def write_cpu(appends: list) -> float:
        cpu = []
        for _ in range(repeats):
            shutil.rmtree(out, ignore_errors=True)
            c0 = time.process_time()
            w = store.StoreWriter.create(out, n_features=d.n_features,
                                         attrs={"n_features": d.n_features}, gradients=True,
                                         strain_gradients=False, expected=results[0])
            for r in appends:
                n = sum(c.n_structures for c in r)
                w.append(r, [(0, 0)] * n, (0, 0), [])
            w.finish()
            cpu.append(time.process_time() - c0)
        return statistics.median(cpu)

    writer_cpu = {"one append per chunk": write_cpu([[r] for r in results]),
                  "one append": write_cpu([results])}
    c0 = time.process_time()
    for _ in range(repeats):
        d.compute(frames, gradients=True, n_threads=1)
    compute_cpu = (time.process_time() - c0) / repeats
    shutil.rmtree(out.parent, ignore_errors=True)
    row = {k: round(statistics.median(v), 4) for k, v in spent.items()}
    row["computed chunks"] = len(results)
    row.update({f"writer_cpu, {k}": round(v, 4) for k, v in writer_cpu.items()})
    row["bare_compute_cpu"] = round(compute_cpu, 4)
    return row


_CHILD = r"""
import json, subprocess, sys, threading, time, atomdesc
from atomdesc import examples

def peak_mb(pid="self"):
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec,
    # so a child of a large benchmark process would report the parent's
    with open(f"/proc/{pid}/status") as f:
        return [int(l.split()[1]) for l in f if l.startswith("VmHWM")][0] / 1024

# the process that parses large inputs (atomdesc.io) is sampled while it runs
readers, reader_peak, running = [], [0.0], [True]
popen = subprocess.Popen
def recorded(*args, **kwargs):
    readers.append(popen(*args, **kwargs))
    return readers[-1]
subprocess.Popen = recorded
def sample():
    while running[0]:
        for p in readers:
            try:
                reader_peak[0] = max(reader_peak[0], peak_mb(p.pid))
            except (OSError, IndexError):
                pass
        time.sleep(0.02)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()

d = atomdesc.descriptor_from_hypers(json.loads(examples.ACSF_N2P2.read_text()))
t = time.perf_counter()
s = atomdesc.featurize_dataset(sys.argv[1], d, sys.argv[2], gradients=sys.argv[3] == "1",
                               progress=False)
seconds = time.perf_counter() - t
running[0] = False
sampler.join()
print(json.dumps({"seconds": seconds, "atoms": s.atoms, "structures": s.structures,
                  "peak_rss_mb": peak_mb(), "reading_process_peak_rss_mb": reader_peak[0]}))
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


#: The goal: the pipeline costs at most this much more than the bare loop on the example.
OVERHEAD_GOAL = 0.10


def verdict(rows: dict) -> str:
    """One line per case: the wall-time overhead on the example against the goal
    (median of the rounds' ratios, and the ratio of the medians)."""
    lines = []
    for case in ("features", "gradients"):
        overhead = rows[case]["overhead_wall_paired_pipeline"]
        met = "met" if overhead <= OVERHEAD_GOAL else "NOT met"
        lines.append(f"example, {case}: pipeline {overhead:+.1%} against the bare loop "
                     f"(median of the rounds' ratios; ratio of the medians "
                     f"{rows[case]['overhead_wall_pipeline']:+.1%}; goal <= "
                     f"{OVERHEAD_GOAL:+.0%}): {met}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15,
                        help="rounds of the overhead runs (each round runs every side once)")
    parser.add_argument("--sizes", default="10000,100000,200000,400000",
                        help="dataset sizes in atoms for the memory test")
    parser.add_argument("--gradient-sizes", default="10000,100000,200000",
                        help="dataset sizes in atoms for the memory test with gradients")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--overhead-atoms", type=int, default=10000,
                        help="also measure the overhead on the examples repeated to this "
                             "many atoms (0: not)")
    parser.add_argument("--baseline", default=None,
                        help="also time pipeline.py, store.py and rowarrays.py of this git "
                             "revision")
    args = parser.parse_args()
    import atomdesc

    print(f"atomdesc {atomdesc.__version__}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    if not args.skip_overhead:
        rows = overhead(args.repeats, args.baseline)
        print(json.dumps({"overhead": rows}, indent=1), flush=True)
        print(verdict(rows), flush=True)
        print(f"load {os.getloadavg()[0]:.1f}", flush=True)
        if args.overhead_atoms:
            data = Path(tempfile.mkdtemp()) / "data.extxyz"
            make_dataset(data, args.overhead_atoms)
            rows = overhead(max(3, args.repeats // 2), args.baseline, data, CASES[:2])
            print(json.dumps({f"overhead, {args.overhead_atoms} atoms": rows}, indent=1),
                  flush=True)
            shutil.rmtree(data.parent, ignore_errors=True)
            print(f"load {os.getloadavg()[0]:.1f}", flush=True)
        print(json.dumps({"breakdown with gradients": breakdown(args.repeats)}, indent=1),
              flush=True)
    if not args.skip_memory:
        memory([int(n) for n in args.sizes.split(",")], gradients=False)
        memory([int(n) for n in args.gradient_sizes.split(",")], gradients=True)


if __name__ == "__main__":
    main()
