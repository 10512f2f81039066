"""The plugin manager and the registry of families, cutoffs and radial bases."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy

from . import hookspecs

hookimpl = pluggy.HookimplMarker("atomdesc")

#: Built-in plugins, registered by import (as pytest does with its own).
BUILTIN_PLUGINS: tuple[str, ...] = (
    "atomdesc.plugins.cutoffs",
    "atomdesc.plugins.acsf",
    "atomdesc.plugins.soap",
)

#: Entry-point group scanned for third-party plugins.
ENTRY_POINT_GROUP = "atomdesc"

#: Set to a non-empty value to skip third-party plugins.
DISABLE_AUTOLOAD_ENV = "ATOMDESC_DISABLE_PLUGIN_AUTOLOAD"

BUILTIN = "atomdesc (built-in)"


class PluginLoadWarning(UserWarning):
    """A third-party plugin could not be loaded; the others still are."""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed to load, and why."""

    distribution: str
    entry_point: str
    error: str


@dataclass(frozen=True)
class Provided:
    """Something a plugin provides, with where it came from."""

    name: str
    obj: Any
    plugin: str
    distribution: str


@dataclass
class PluginManager:
    """A pluggy manager plus the distribution of each entry-point plugin."""

    pm: pluggy.PluginManager
    distributions: dict[str, str] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def distribution_of(self, plugin_name: str) -> str:
        return self.distributions.get(plugin_name, BUILTIN)


def make_plugin_manager(
    *, entry_points: bool = True, blocked: tuple[str, ...] = ()
) -> PluginManager:
    """Create a plugin manager with the built-ins and, unless disabled, the entry points.

    :param entry_points: load third-party plugins from the ``atomdesc``
        entry-point group; ``ATOMDESC_DISABLE_PLUGIN_AUTOLOAD=1`` also turns it off.
    :param blocked: plugin (entry-point) names never to register.
    """
    pm = pluggy.PluginManager("atomdesc")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("ATOMDESC_DEBUG_PLUGINS"):
        pm.trace.root.setwriter(print)
        pm.enable_tracing()
    for name in blocked:
        pm.set_blocked(name)
    for modname in BUILTIN_PLUGINS:
        if not pm.is_blocked(modname):
            pm.register(importlib.import_module(modname), name=modname)
    pm.check_pending()
    manager = PluginManager(pm)
    if entry_points and not os.environ.get(DISABLE_AUTOLOAD_ENV):
        _load_entry_points(manager)
    return manager


def _load_entry_points(manager: PluginManager) -> None:
    """Register every plugin of the entry-point group; a broken one is reported, not fatal."""
    pm = manager.pm
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"] or "<unknown distribution>"
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in seen or pm.is_blocked(ep.name):
                continue
            seen.add(ep.name)
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not break the others
                _report_failure(manager, dist_name, ep.name, exc)
                continue
            try:
                pm.check_pending()
            except pluggy.PluginValidationError as exc:
                pm.unregister(name=ep.name)
                _report_failure(manager, dist_name, ep.name, exc)
                continue
            manager.distributions[ep.name] = dist_name


def _report_failure(manager: PluginManager, dist: str, ep_name: str, exc: Exception) -> None:
    failure = PluginFailure(dist, ep_name, f"{type(exc).__name__}: {exc}")
    manager.failures.append(failure)
    warnings.warn(
        f"atomdesc plugin {ep_name!r} from distribution {dist!r} failed to load "
        f"and was skipped: {failure.error}",
        PluginLoadWarning,
        stacklevel=3,
    )


class Registry:
    """Families, cutoffs and radial bases by name, with the plugin each came from."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        self.families = self._collect(manager.pm.hook.atomdesc_families, "family")
        self.cutoffs = self._collect(manager.pm.hook.atomdesc_cutoffs, "cutoff")
        self.radial_bases = self._collect(manager.pm.hook.atomdesc_radial_bases, "radial basis")
        manager.pm.hook.atomdesc_registry_created.call_historic(kwargs={"registry": self})

    @property
    def failures(self) -> list[PluginFailure]:
        return self.manager.failures

    def _collect(self, hook: Any, kind: str) -> dict[str, Provided]:
        found: dict[str, Provided] = {}
        # Built-ins first, then third parties in load order: a name clash keeps
        # the first provider and warns about the second.
        for impl in hook.get_hookimpls():  # registration order
            dist = self.manager.distribution_of(impl.plugin_name)
            for obj in impl.function() or ():
                name = getattr(obj, "name", None)
                if not isinstance(name, str):
                    warnings.warn(
                        f"{kind} {obj!r} from {impl.plugin_name!r} has no string 'name'; skipped",
                        PluginLoadWarning,
                        stacklevel=2,
                    )
                    continue
                if name in found:
                    warnings.warn(
                        f"{kind} {name!r} from {dist!r} clashes with the one from "
                        f"{found[name].distribution!r}; the latter is kept",
                        PluginLoadWarning,
                        stacklevel=2,
                    )
                    continue
                found[name] = Provided(name, obj, impl.plugin_name, dist)
        return found

    def family(self, name: str) -> Provided:
        return self._lookup(self.families, name, "descriptor family")

    def cutoff(self, name: str) -> Provided:
        return self._lookup(self.cutoffs, name, "cutoff function")

    def radial_basis(self, name: str) -> Provided:
        return self._lookup(self.radial_bases, name, "radial basis")

    def _lookup(self, table: dict[str, Provided], name: str, kind: str) -> Provided:
        try:
            return table[name]
        except KeyError:
            msg = f"unknown {kind} {name!r}; available: {sorted(table)}"
            if self.failures:
                broken = ", ".join(f"{f.entry_point!r} ({f.distribution})" for f in self.failures)
                msg += f". These plugins failed to load: {broken}"
            raise ValueError(msg) from None


@cache
def get_registry() -> Registry:
    """The process-wide registry (cached: scanning entry points walks every distribution)."""
    return Registry(make_plugin_manager())


def reload_plugins() -> Registry:
    """Forget the cached registry and scan the plugins again."""
    get_registry.cache_clear()
    return get_registry()
