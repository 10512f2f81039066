"""Benchmarks of atomdesc against peer libraries: ratios measured side by side in one run.

Usage (from the repository root)::

    python tests/benchmarks/benchmark.py acsf                  # full run, a few minutes
    python tests/benchmarks/benchmark.py acsf --quick          # smoke run, under a minute
    python tests/benchmarks/benchmark.py acsf --threads 1 2 --output benchmarks-acsf.md
    python tests/benchmarks/benchmark.py acsf --max-load 1.5   # shared machine: wait for quiet

Each family is a subcommand (see ``FAMILIES``); the structures are shared
(``systems.py``). Peers are optional requirements of the benchmark only, never
dependencies of atomdesc; each family's module names its own::

    pip install "dscribe==2.1.2"                               # ACSF peer

How the numbers are made, and why:

* Timings are wall-clock times of the public APIs (``atomdesc.Descriptor.compute``,
  ``dscribe.descriptors.ACSF.create`` / ``derivatives``), including all their
  Python overhead, as a user sees them.
* The machines this runs on are shared, so only ratios from the same run are
  compared. The callables being compared are timed interleaved (round robin),
  so a burst of load hits both sides alike; each is sampled ``--repeat`` times
  and the best and the median are kept. The 1-minute load average is printed
  next to every timing; the benchmark itself adds about 1, so distrust rows
  measured under a load well above that.
* Nothing is estimated without being measured: when a peer is too slow to run
  in full, it is run on a subset and scaled by a stated, exact rule (see the
  family's module).

This folder is excluded from pytest collection (``norecursedirs``); its file
names must not start with ``test_``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: Families that can be benchmarked: subcommand -> module in this folder.
#: A module provides ``DESCRIPTION``, ``add_arguments(parser)``,
#: ``run(args, report)`` and ``memory_probe(system_key) -> dict``.
FAMILIES = {
    "acsf": "acsf_cases",
    "soap": "soap_cases",
    "soap-compression": "soap_compression_cases",
}


# ------------------------------------------------------------------ timing


def load_average() -> float:
    """The 1-minute load average (what ``uptime`` shows first)."""
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float | None, timeout: float = 900.0) -> None:
    """Sleep until the 1-minute load average drops below ``max_load`` (at most ``timeout`` s).

    While this process sleeps it adds nothing to the load, so the average
    decays towards what the other processes cause.
    """
    if max_load is None:
        return
    waited = 0.0
    while load_average() >= max_load and waited < timeout:
        if waited == 0:
            print(f"... waiting for the load average ({load_average():.2f}) to drop below "
                  f"{max_load}", file=sys.stderr, flush=True)
        time.sleep(15)
        waited += 15
    if load_average() >= max_load:
        print(f"... still at load {load_average():.2f} after {timeout:.0f} s; measuring anyway",
              file=sys.stderr, flush=True)


@dataclass
class Timing:
    """Seconds per call of one callable: best and median of the samples."""

    samples: list[float]
    load: float  # highest 1-minute load average seen while sampling

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def time_interleaved(
    calls: dict[str, Callable[[], Any]], repeat: int, min_sample: float = 0.2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time several callables in round robin, ``repeat`` samples each.

    A sample averages as many consecutive calls as fill ``min_sample`` seconds
    (fast calls are otherwise dominated by timer and scheduling noise). The
    garbage collector is off inside a sample, as in :mod:`timeit`. ``clock`` is
    wall time by default; ``time.process_time`` (CPU time of this process) is
    less disturbed by other processes on a busy machine, for 1-thread calls.
    """
    numbers = {}
    for name, call in calls.items():  # warm-up, also sizes the samples
        started = clock()
        call()
        elapsed = clock() - started
        numbers[name] = max(1, int(min_sample / max(elapsed, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    load = load_average()
    for _ in range(repeat):
        for name, call in calls.items():
            gc.collect()
            gc.disable()
            try:
                started = clock()
                for _ in range(numbers[name]):
                    call()
                samples[name].append((clock() - started) / numbers[name])
            finally:
                gc.enable()
        load = max(load, load_average())
    return {name: Timing(samples[name], load) for name in calls}


def time_thread_counts(descriptor: Any, inputs: Any, threads: list[int], args: argparse.Namespace,
                       min_time: float) -> dict[str, Any]:
    """Features and features + gradients of one input at each thread count, interleaved."""
    calls: dict[str, Callable[[], Any]] = {}
    for n in threads:
        calls[f"features/{n}"] = lambda n=n: descriptor.compute(inputs, n_threads=n)
        calls[f"gradients/{n}"] = lambda n=n: descriptor.compute(inputs, gradients=True,
                                                                 n_threads=n)
    return time_interleaved(calls, args.repeat, 0.05 if args.quick else min_time)


def time_once(call: Callable[[], Any], repeat: int) -> tuple[Timing, Any]:
    """Time a slow callable (seconds or more per call) ``repeat`` times.

    Each sample is the call alone: the previous call's result is released before the
    clock starts. (Released inside the next sample, it was charged to every sample but
    the first of a block, and the best of a block was then often its first sample: g2's
    + gradients block 133 ms first, 150 ms after, the release of a result being listing
    and marking its pages for reuse.) :func:`time_interleaved` drops each result inside
    its own sample instead.

    :return: the timing and the last call's result (not worth computing again).
    """
    samples = []
    load = load_average()
    result = None
    for _ in range(repeat):
        result = None  # released here, untimed
        gc.collect()
        started = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - started)
        load = max(load, load_average())
    return Timing(samples, load), result


def as_list(results: Any) -> list[Any]:
    """One result per structure, whether one structure or a list was computed (DScribe
    gives a 3-D array, not a list, for a list of structures of equal size)."""
    if isinstance(results, list) or (hasattr(results, "ndim") and results.ndim == 3):
        return list(results)
    return [results]


# -------------------------------------------------------------- formatting


def fmt_time(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_ratio(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}×"
    if x >= 10:
        return f"{x:.1f}×"
    return f"{x:.2f}×"


def fmt_rate(atoms_per_second: float) -> str:
    return f"{atoms_per_second:,.0f}"


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


# ------------------------------------------------------------------ report


@dataclass
class Goal:
    """A performance goal and the worst measured value over the systems it covers."""

    name: str
    target: str
    measured: str
    met: bool
    detail: str = ""


@dataclass
class Report:
    """Markdown printed while the benchmark runs and written to ``--output`` at the end."""

    lines: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def heading(self, level: int, title: str) -> None:
        self.add()
        self.add("#" * level + " " + title)
        self.add()

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.add("| " + " | ".join(headers) + " |")
        self.add("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            self.add("| " + " | ".join(str(cell) for cell in row) + " |")
        self.add()

    def goal(self, goal: Goal) -> None:
        self.goals.append(goal)

    def goal_table(self) -> None:
        self.table(
            ["ratio", "goal", "measured (worst case)", "met?", "over"],
            [[g.name, g.target, g.measured, "yes" if g.met else "**no**", g.detail]
             for g in self.goals],
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines).strip() + "\n")


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


#: The parts of the repository whose changes change the timings.
SOURCE_PATHS = ("pkg", "plugins", "fortran", "meson.build", "pyproject.toml")


def source_state() -> str:
    """The git commit of this checkout's package sources, with any uncommitted edits.

    Uncommitted edits are named with a hash of their diff, so two runs can be
    told apart; :func:`main` checks the state again at the end of a run.
    """
    def git(*command: str) -> str:
        return subprocess.run(["git", *command], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        paths = [f":(top){path}" for path in SOURCE_PATHS]
        changed = git("diff", "HEAD", "--name-only", "--", *paths).split()
        diff = git("diff", "HEAD", "--", *paths)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not changed:
        return f"git {commit}"
    digest = hashlib.sha1(diff.encode()).hexdigest()[:8]
    return f"git {commit} + uncommitted changes to {', '.join(changed)} (diff {digest})"


def source_digest() -> str:
    """A hash of the package sources as they are on disk (committed or not)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--full-name", "--cached", "--others", "--exclude-standard", "-z", "--",
             *[f":(top){path}" for path in SOURCE_PATHS]],
            cwd=HERE, capture_output=True, check=True).stdout
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=HERE,
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    digest = hashlib.sha1()
    for name in sorted(filter(None, listed.decode().split("\0"))):
        path = Path(top) / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_lines(packages: Sequence[str]) -> list[str]:
    """What the timings were measured on, as markdown bullet points."""
    model, simd = "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not simd:
                # the vector extensions the kernels could use with -march flags
                wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f")
                flags = line.split(":", 1)[1].split()
                simd = " ".join(f for f in wanted if f in flags)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    one, five, fifteen = os.getloadavg()
    versions = ", ".join(f"{p} {package_version(p)}" for p in packages)
    return [
        f"- atomdesc source: {source_state()}; sources digest {source_digest()}",
        f"- CPU: {model}; {os.cpu_count()} logical CPUs, {usable} usable by this process; "
        f"SIMD: {simd or 'unknown'}",
        f"- load average at start (1, 5, 15 min): {one:.2f}, {five:.2f}, {fifteen:.2f}",
        f"- {platform.platform()}; Python {platform.python_version()}",
        f"- {versions}",
        f"- OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}; "
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}",
    ]


# ------------------------------------------------------------------ memory


def _status_bytes(key: str) -> int:
    """A ``kB`` field of /proc/self/status (Linux), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def rss_bytes() -> int:
    """Resident memory of this process now."""
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since start or :func:`reset_peak_rss`.

    Read from VmHWM rather than ``getrusage``: Linux carries ``ru_maxrss``
    over from the parent through fork and exec, so a child started by a big
    benchmark process would report the parent's peak.
    """
    return _status_bytes("VmHWM")


def reset_peak_rss() -> bool:
    """Restart the peak at the current resident size (Linux ≥ 4.0); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# --------------------------------------------------------------- subprocess


def run_memory_probe(family: str, system_key: str) -> dict[str, Any]:
    """Run ``memory_probe`` of a family in a fresh interpreter (a clean peak RSS)."""
    command = [sys.executable, str(Path(__file__).resolve()), family, "--memory-probe", system_key]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {system_key} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- CLI


def load_family(name: str):
    sys.path.insert(0, str(HERE))  # the family modules live next to this file
    return importlib.import_module(FAMILIES[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="atomdesc against peer libraries, as ratios measured in one run."
    )
    sub = parser.add_subparsers(dest="family", required=True)
    for name in FAMILIES:
        module = load_family(name)
        p = sub.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        p.add_argument("--quick", action="store_true",
                       help="fewer repeats and smaller peer subsets: a smoke run")
        p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                       help="thread counts for the scaling table; the first is the baseline")
        p.add_argument("--repeat", type=int, default=None,
                       help="samples per timing (default 7, or 3 with --quick)")
        p.add_argument("--output", type=Path, default=None,
                       help="also write the markdown report to this file")
        p.add_argument("--max-load", type=float, default=None, metavar="L",
                       help="before each block of measurements, wait (see --max-wait) until "
                            "the 1-minute load average is below L; e.g. 0.5 on a shared machine")
        p.add_argument("--max-wait", type=float, default=900.0, metavar="SECONDS",
                       help="longest wait for --max-load before measuring anyway (default 900)")
        p.add_argument("--memory-probe", metavar="SYSTEM", default=None,
                       help=argparse.SUPPRESS)  # internal: one probe in a child process
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = load_family(args.family)
    if args.memory_probe is not None:
        print(json.dumps(module.memory_probe(args.memory_probe)))
        return 0
    if args.repeat is None:
        args.repeat = 3 if args.quick else 7
    report = Report()
    digest = source_digest()
    module.run(args, report)
    if source_digest() != digest:  # an editable install rebuilds on import: children differ
        report.add()
        report.add("**Warning: the atomdesc sources changed during this run**; the tables "
                   "may mix versions: run again.")
    if args.output is not None:
        report.write(args.output)
        print(f"\nreport written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
