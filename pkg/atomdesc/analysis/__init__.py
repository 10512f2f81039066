"""Descriptor quality analysis: sensitivity, singular points, uniqueness, invariance, audit.

Works with any registered family that provides position gradients, third-party
plugins included (DESIGN.md §7, SCIENCE.md §4-6)::

    >>> import atomdesc
    >>> from atomdesc import analysis
    >>> d = atomdesc.descriptor("acsf", species=["H", "C"], r_cut=4.0,
    ...                         g2_params=[[1.0, 0.0]], g4_params=[[0.1, 1, 1]])
    >>> analysis.sensitivity(d, analysis.tetrahedron()).rank
    1
"""

from __future__ import annotations

from . import environments
from .environments import (
    bent,
    bpm_pair,
    bpm_random,
    collinear,
    degenerate_pairs,
    planar,
    random_ch4,
    singular_environments,
    tetrahedron,
    xpm_branch_point,
    xpm_h4,
    xpm_pair,
    xpm_random,
)
from .audit import AuditReport, audit
from .checks import cost, fixed_size, generality, gradient_check, invariance, smoothness, uniqueness
from .jacobian import RTOL, Jacobian, Sensitivity, feature_scale, jacobian, sensitivity
from .manifold import ManifoldPath, follow_null_direction, plane_overlap_e4
from .scan import DatasetStatistics, TruncationScan, dataset_statistics, truncation_scan
from .singular import Classification, classify, environment_symmetry, symmetry_analysis

__all__ = [
    "RTOL",
    "AuditReport",
    "Classification",
    "DatasetStatistics",
    "ManifoldPath",
    "TruncationScan",
    "audit",
    "classify",
    "cost",
    "dataset_statistics",
    "environment_symmetry",
    "fixed_size",
    "follow_null_direction",
    "generality",
    "gradient_check",
    "invariance",
    "smoothness",
    "symmetry_analysis",
    "truncation_scan",
    "uniqueness",
    "Jacobian",
    "Sensitivity",
    "bent",
    "bpm_pair",
    "bpm_random",
    "collinear",
    "degenerate_pairs",
    "environments",
    "feature_scale",
    "jacobian",
    "planar",
    "plane_overlap_e4",
    "random_ch4",
    "sensitivity",
    "singular_environments",
    "tetrahedron",
    "xpm_branch_point",
    "xpm_h4",
    "xpm_pair",
    "xpm_random",
]
