"""The compiled kernels, chosen once at import between the builds of this machine's CPU.

On x86-64 the same Fortran sources are compiled twice (meson.build):

* ``atomdesc._kernels``: the portable baseline (x86-64, SSE2), runs on every CPU;
* ``atomdesc._kernels_v3``: ``-march=x86-64-v3`` (AVX2, FMA, BMI1/2, ...), used when
  the CPU has all of x86-64-v3.

On other CPUs only the baseline exists. ``ATOMDESC_KERNELS=baseline`` or ``=v3``
forces a variant (read once, at import). Everything calls the kernels through
:data:`fortran`; :func:`load` gives any variant's extension module, for comparing them.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType
from typing import Any

#: Environment variable that forces a variant.
ENV_VAR = "ATOMDESC_KERNELS"

#: Variant name -> extension module, the preferred one first.
MODULES = {"v3": "atomdesc._kernels_v3", "baseline": "atomdesc._kernels"}

#: numpy's names of the x86-64-v3 features (``X86_V3`` groups them in numpy >= 2.4).
V3_FEATURES = ("AVX", "AVX2", "FMA3", "F16C", "BMI", "BMI2", "LZCNT", "MOVBE")


def cpu_features() -> dict[str, bool]:
    """numpy's runtime CPU feature detection (empty if this numpy does not expose it)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # pragma: no cover - numpy < 2 layout or a future move
        try:
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return {}
    return dict(__cpu_features__)


def cpu_supports_v3() -> bool:
    """True when this CPU runs code compiled with ``-march=x86-64-v3``."""
    features = cpu_features()
    return features.get("X86_V3", False) or all(features.get(f, False) for f in V3_FEATURES)


def load(variant: str) -> ModuleType:
    """The extension module of ``variant`` (``"baseline"`` or ``"v3"``).

    :raises ValueError: for an unknown name.
    :raises ImportError: when the variant was not built (not x86-64, or an old compiler).
    """
    if variant not in MODULES:
        raise ValueError(f"unknown kernel variant {variant!r}; expected one of {sorted(MODULES)}")
    return importlib.import_module(MODULES[variant])


def available() -> list[str]:
    """Variants built into this installation, whether or not this CPU can run them."""
    found = []
    for variant in MODULES:
        try:
            load(variant)
        except ImportError:
            continue
        found.append(variant)
    return found


def _select(forced: str) -> tuple[str, ModuleType]:
    if forced:
        if forced not in MODULES:
            raise ImportError(f"{ENV_VAR}={forced!r}: expected one of {sorted(MODULES)}")
        try:
            return forced, load(forced)
        except ImportError as exc:
            raise ImportError(
                f"{ENV_VAR}={forced!r} but atomdesc was built without that kernel variant "
                f"(only x86-64 builds have 'v3'): {exc}"
            ) from exc
    if cpu_supports_v3():
        try:
            return "v3", load("v3")
        except ImportError:
            pass
    return "baseline", load("baseline")


#: Rounds libgomp's idle threads spin after a parallel region before they sleep,
#: set at import unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``.
#: libgomp's default (300 000, with no wait policy) keeps the worker spinning
#: through the Python and the neighbour search (vesin's own threads) of the next
#: call, on the core they need: back-to-back calls at 2 threads on 2 cores took
#: si512 ACSF features 11.4-12.7 ms instead of 10.0-10.1, SOAP 4.5 instead of
#: 4.0 ms. libgomp reads it once, when it is loaded: by the import below, unless
#: another library of the process loaded it first.
SPIN_COUNT = "10000"


def _limit_openmp_spinning() -> bool:
    """Set ``GOMP_SPINCOUNT`` (see :data:`SPIN_COUNT`) unless the user chose a policy."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True


#: Whether this import set GOMP_SPINCOUNT.
SPIN_COUNT_SET = _limit_openmp_spinning()
#: The value of ATOMDESC_KERNELS at import ("" when unset).
FORCED = os.environ.get(ENV_VAR, "").strip().lower()
#: The variant in use: ``"v3"`` or ``"baseline"``.
VARIANT, extension = _select(FORCED)
#: The Fortran module of the chosen extension: ``fortran.acsf(...)``, ``fortran.soap(...)``.
fortran = extension.kernels


def max_threads() -> int:
    """Threads the kernels use by default (``OMP_NUM_THREADS`` or the cores)."""
    return int(fortran.max_threads())


#: Whether a kernel call of this process asked for more than one thread (so
#: libgomp may have started its threads), whether the process is a child
#: forked after that (libgomp's threads do not survive ``fork``, and a
#: parallel region in the child waits for them forever), and whether that
#: was said.
_openmp = {"started": False, "lost": False, "warned": False}


def _after_fork_in_child() -> None:
    _openmp["lost"] = _openmp["started"]
    _openmp["warned"] = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def call_threads(n_threads: int) -> int:
    """Threads for one kernel call: ``n_threads`` (0: the default), one in a forked child.

    A process forked after its kernels ran on several threads (e.g. a
    ``multiprocessing`` worker started with the ``fork`` method) computes on
    one thread, with a warning, instead of hanging.
    """
    if _openmp["lost"]:
        if not _openmp["warned"]:
            _openmp["warned"] = True
            warnings.warn(
                "atomdesc: this process was forked after its kernels ran OpenMP threads, which "
                "do not survive fork; the kernels run on one thread here (start worker "
                "processes with the 'spawn' or 'forkserver' method to keep them)",
                RuntimeWarning, stacklevel=5)  # compute()'s caller, for one structure
        return 1
    if n_threads != 1:
        _openmp["started"] = True
    return n_threads


def info() -> dict[str, Any]:
    """The kernel variant in use, why, and where it was loaded from."""
    return {
        "variant": VARIANT,
        "module": extension.__name__,
        "file": extension.__file__,
        "forced_by": f"{ENV_VAR}={FORCED}" if FORCED else None,
        "cpu_supports_v3": cpu_supports_v3(),
        "available": available(),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "gomp_spincount_set_by": "atomdesc" if SPIN_COUNT_SET else "the environment",
    }
