"""atomdesc: local atomic-environment descriptors with exact derivatives.

>>> import atomdesc
>>> from ase.build import molecule
>>> d = atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0, g2_params=[[1.0, 1.0]])
>>> res = d.compute(molecule("CH4"), gradients=True)
>>> res.features.shape
(5, 7)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .cutoffs import CutoffFunction
from .descriptor import Descriptor, max_threads
from .output_memory import release_memory
from .radial import RadialBasis
from .registry import PluginLoadWarning, get_registry, hookimpl, reload_plugins
from .result import DescriptorResult
from .system import System

_LAZY = {
    "featurize_dataset": ("pipeline", "featurize_dataset"),
    "open_features": ("store", "open_features"),
    "FeatureStore": ("store", "FeatureStore"),
    "FrameSource": ("io", "FrameSource"),
}

try:
    __version__ = version("atomdesc")
except PackageNotFoundError:  # pragma: no cover - running from an unusual layout
    __version__ = "0.0.0"

__all__ = [
    "ACSF",
    "Bispectrum",
    "CutoffFunction",
    "Descriptor",
    "DescriptorResult",
    "FeatureStore",
    "FrameSource",
    "PluginLoadWarning",
    "RadialBasis",
    "SOAP",
    "SphericalExpansion",
    "System",
    "descriptor",
    "descriptor_from_hypers",
    "families",
    "featurize_dataset",
    "get_registry",
    "hookimpl",
    "max_threads",
    "open_features",
    "release_memory",
    "reload_plugins",
    "show_config",
]


def descriptor(family: str, **hypers: Any) -> Descriptor:
    """Build a descriptor of a registered family from its hyper-parameters.

    :param family: the family name, e.g. ``"acsf"`` (see :func:`families`).
    :raises ValueError: for an unknown family or invalid hyper-parameters.
    """
    cls = get_registry().family(family).obj
    try:
        return cls(**hypers)
    except TypeError as exc:  # unknown or missing keyword arguments
        raise ValueError(f"invalid hyper-parameters for {family!r}: {exc}") from None


def descriptor_from_hypers(hypers: dict[str, Any]) -> Descriptor:
    """Rebuild a descriptor from ``Descriptor.hypers`` (e.g. read back from JSON)."""
    if not isinstance(hypers, dict) or "family" not in hypers:
        raise ValueError("hypers must be a dict with a 'family' key")
    rest = dict(hypers)
    return descriptor(rest.pop("family"), **rest)


def families() -> list[dict[str, str]]:
    """Every registered family with where it came from.

    :return: one dict per family: ``name``, ``plugin`` (module or entry point),
        ``distribution`` (the package that provides it) and ``class``.
    """
    return [
        {
            "name": p.name,
            "plugin": p.plugin,
            "distribution": p.distribution,
            "class": f"{p.obj.__module__}.{p.obj.__qualname__}",
        }
        for p in sorted(get_registry().families.values(), key=lambda p: p.name)
    ]


def show_config(mode: str = "stdout") -> dict[str, Any] | None:
    """How this installation runs: version, kernel variant (see :mod:`atomdesc.kernels`), threads.

    :param mode: ``"stdout"`` prints it, ``"dicts"`` returns it.
    """
    import sys

    import numpy

    from . import kernels

    config = {
        "atomdesc": {"version": __version__, "path": __file__},
        "kernels": kernels.info(),
        "openmp": {"max_threads": max_threads()},
        "python": {"version": sys.version.split()[0], "numpy": numpy.__version__},
    }
    if mode == "dicts":
        return config
    if mode != "stdout":
        raise ValueError(f"mode must be 'stdout' or 'dicts', not {mode!r}")
    for section, entries in config.items():
        print(f"{section}:")
        for key, value in entries.items():
            print(f"  {key}: {value}")
    return None


def __getattr__(name: str) -> Any:
    # The convenience classes live in the built-in plugins, which import this
    # package; resolving them lazily avoids the import cycle.
    if name == "ACSF":
        from .plugins.acsf import ACSF

        return ACSF
    if name in ("SOAP", "SphericalExpansion", "Bispectrum"):
        from .plugins import soap

        return getattr(soap, name)
    if name in _LAZY:  # the dataset pipeline imports zarr: only when used
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'atomdesc' has no attribute {name!r}")
