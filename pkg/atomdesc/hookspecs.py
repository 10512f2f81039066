"""Hook specifications for atomdesc plugins.

A plugin is a module (or object) whose functions carry :data:`atomdesc.hookimpl`.
Built-in plugins live in :mod:`atomdesc.plugins`; third-party plugins are found
through the ``atomdesc`` entry-point group::

    # pyproject.toml of a third-party package
    [project.entry-points.atomdesc]
    my_family = "my_package.atomdesc_plugin"

Hook names carry the ``atomdesc_`` prefix; an implementation whose name matches
no specification is an error (``check_pending``), so a typo never goes unseen.
Implementations may accept fewer arguments than a specification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .cutoffs import CutoffFunction
    from .descriptor import Descriptor
    from .radial import RadialBasis
    from .registry import Registry

hookspec = pluggy.HookspecMarker("atomdesc")


# ----------------------------------------------------------------- providers


@hookspec
def atomdesc_families() -> list[type[Descriptor]]:
    """Return the descriptor families this plugin provides.

    Each family is a subclass of :class:`atomdesc.Descriptor` with a unique
    class attribute ``name``; its constructor takes the hyper-parameters as
    keyword arguments and its ``compute_system`` fills a
    :class:`atomdesc.DescriptorResult`.

    :return: a list of classes; the lists of all plugins are concatenated.
    """


@hookspec
def atomdesc_cutoffs() -> list[type[CutoffFunction]]:
    """Return the cutoff (switching) functions this plugin provides.

    Each is a subclass of :class:`atomdesc.CutoffFunction` with a unique
    ``name``. A cutoff with ``kernel_id = 0`` (any third-party one) is
    evaluated in the Fortran kernels through a checked spline table of its
    numpy ``evaluate`` method.

    :return: a list of classes; the lists of all plugins are concatenated.
    """


@hookspec
def atomdesc_radial_bases() -> list[type[RadialBasis]]:
    """Return the radial bases this plugin provides.

    Each is a subclass of :class:`atomdesc.RadialBasis` with a unique
    ``name``, evaluated in numpy and tabulated for the kernels.

    :return: a list of classes; the lists of all plugins are concatenated.
    """


# -------------------------------------------------------------- notification


@hookspec(historic=True)
def atomdesc_registry_created(registry: Registry) -> None:
    """Called once the registry of families, cutoffs and bases is built.

    :param registry: the new :class:`atomdesc.registry.Registry`.

    .. note:: This hook is historic: a plugin registered later is still called.
    """
