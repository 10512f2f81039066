"""The ACSF family: Behler-Parrinello symmetry functions G1-G5 (``fortran/acsf.f90``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from atomdesc import kernels
from atomdesc.cutoffs import parse_cutoff_spec
from atomdesc.descriptor import Descriptor, normalise_species, positive_float
from atomdesc.kernel_inputs import KernelNeighbours
from atomdesc.registry import get_registry, hookimpl
from atomdesc.result import DescriptorResult

#: Pair-counting conventions of the angular terms G4, G5 (SCIENCE.md 3).
CONVENTIONS = {
    "dscribe": 1.0,  # unique pairs j < k, DScribe's column order (also n2p2's sums)
    "all_pairs": 2.0,  # Behler's double sum over j != k: twice the unique-pair value
}


class ACSF(Descriptor):
    """Atom-centred symmetry functions (Behler & Parrinello; Behler, JCP 134, 074106 (2011)).

    For each neighbour species (by atomic number) the columns are
    ``[G1, G2(g2_params), G3(g3_params)]``; then for each unordered pair of
    species ``[G4(g4_params), G5(g5_params)]``, pairs ordered by the heavier
    species, then the lighter (H-H, H-C, C-C, H-O, C-O, O-O: DScribe's layout)::

        G1 = Σ_j f_c(R_ij)
        G2 = Σ_j exp(-η (R_ij - R_s)²) f_c(R_ij)
        G3 = Σ_j cos(κ R_ij) f_c(R_ij)
        G4 = 2^(1-ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ exp(-η (R_ij² + R_ik² + R_jk²)) f_c(R_ij) f_c(R_ik) f_c(R_jk)
        G5 = 2^(1-ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ exp(-η (R_ij² + R_ik²)) f_c(R_ij) f_c(R_ik)

    Parameters
    ----------
    species : elements that may appear (symbols or atomic numbers).
    r_cut : cutoff radius in Å.
    g2_params : ``[[eta, r_s], ...]`` (eta in Å⁻², r_s in Å).
    g3_params : ``[kappa, ...]`` (Å⁻¹).
    g4_params, g5_params : ``[[eta, zeta, lambda], ...]`` with zeta >= 1, lambda = ±1.
    cutoff : a registered cutoff name (``"cosine"``, ``"tanh3"``, ``"polynomial"``,
        or a plugin's) or ``{"name": "polynomial", "order": 3}``.
    convention : ``"dscribe"`` (default: unique pairs j < k, DScribe 2.1's values and
        column order) or ``"all_pairs"`` (Behler's sum over j != k: G4, G5 doubled).
    """

    name = "acsf"
    feature_label_names = ("function", "species", "index")
    # the functions above need no atom at i: a point works as well (the kernel never
    # reads the centre's species)
    supports_point_centers = True

    def __init__(
        self,
        *,
        species: list[str | int],
        r_cut: float,
        g2_params: Any = None,
        g3_params: Any = None,
        g4_params: Any = None,
        g5_params: Any = None,
        cutoff: str | dict[str, Any] = "cosine",
        convention: str = "dscribe",
    ) -> None:
        self.species = normalise_species(species)
        self.r_cut = positive_float(r_cut, "r_cut")
        self.g2_params = _param_table(g2_params, "g2_params", ("eta", "r_s"))
        self.g3_params = _param_table(g3_params, "g3_params", ("kappa",), flat=True)
        self.g4_params = _angular_table(g4_params, "g4_params")
        self.g5_params = _angular_table(g5_params, "g5_params")
        if (self.g2_params[:, 0] < 0).any():
            raise ValueError("g2_params: eta must be >= 0")
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {list(CONVENTIONS)}, got {convention!r}")
        self.convention = convention
        cutoff_name, cutoff_params = parse_cutoff_spec(cutoff)
        cutoff_class = get_registry().cutoff(cutoff_name).obj
        self.cutoff = cutoff_class(self.r_cut, **cutoff_params)
        self._cutoff_args = self.cutoff.kernel_args()
        self._labels = self._make_labels()

    # ---------------------------------------------------------------- metadata

    @property
    def hypers(self) -> dict[str, Any]:
        return {
            "family": self.name,
            "species": list(self.species),
            "r_cut": self.r_cut,
            "g2_params": self.g2_params.tolist(),
            "g3_params": self.g3_params[:, 0].tolist(),
            "g4_params": self.g4_params.tolist(),
            "g5_params": self.g5_params.tolist(),
            "cutoff": self.cutoff.hypers(),
            "convention": self.convention,
        }

    @property
    def feature_labels(self) -> tuple[tuple[Any, ...], ...]:
        return self._labels

    @property
    def batchable(self) -> bool:
        return True  # every row is one centre's own

    @property
    def batches_periodic(self) -> bool:
        return True  # neighbours only from KernelNeighbours

    def _make_labels(self) -> tuple[tuple[Any, ...], ...]:
        labels: list[tuple[Any, ...]] = []
        for s in self.species:
            labels.append(("G1", s, 0))
            labels += [("G2", s, k) for k in range(len(self.g2_params))]
            labels += [("G3", s, k) for k in range(len(self.g3_params))]
        for b, sb in enumerate(self.species):
            for sa in self.species[: b + 1]:
                pair = f"{sa}-{sb}"
                labels += [("G4", pair, k) for k in range(len(self.g4_params))]
                labels += [("G5", pair, k) for k in range(len(self.g5_params))]
        return tuple(labels)

    @property
    def n_features(self) -> int:
        ns = len(self.species)
        radial = 1 + len(self.g2_params) + len(self.g3_params)
        return ns * radial + ns * (ns + 1) // 2 * (len(self.g4_params) + len(self.g5_params))

    # ------------------------------------------------------------- computation

    def compute_system(self, system, centers, *, gradients, strain_gradients, n_threads):
        nb = KernelNeighbours.build(system, self.r_cut, centers, self.species, gradients,
                                    n_threads)
        kind, cpar, table = self._cutoff_args
        # the kernel only adds to its outputs
        feat, grad, strain = nb.outputs(self.n_features, strain_gradients, zeroed=True)
        kernels.fortran.acsf(
            nb.start, nb.vectors.T, nb.distances, nb.species, nb.entry_slot,
            nb.center_slot, nb.slot_start,
            self.g2_params.T, self.g3_params[:, 0], self.g4_params.T, self.g5_params.T,
            self.r_cut, kind, cpar, table, len(self.species), CONVENTIONS[self.convention],
            gradients, strain_gradients, n_threads, feat, grad, strain,
        )
        pairs, values = nb.result_gradients(grad.T) if gradients else (None, None)
        return DescriptorResult(
            features=feat.T,
            centers=centers,
            n_atoms=len(system),
            feature_labels=self.feature_labels,
            gradient_pairs=pairs,
            gradient_values=values,
            strain_gradients=strain.T if strain_gradients else None,
        )


def _param_table(value: Any, name: str, fields: tuple[str, ...], flat: bool = False) -> np.ndarray:
    """A parameter list as a finite float array of shape (n, len(fields))."""
    width = len(fields)
    if value is None:
        return np.zeros((0, width))
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers, got {value!r}") from None
    if flat and array.ndim == 1:
        array = array[:, None]
    if array.size == 0:
        return np.zeros((0, width))
    if array.ndim != 2 or array.shape[1] != width:
        form = "[" + ", ".join(fields) + "]" if not flat else fields[0]
        raise ValueError(f"{name} must be a list of {form} entries, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    return np.ascontiguousarray(array)


def _angular_table(value: Any, name: str) -> np.ndarray:
    array = _param_table(value, name, ("eta", "zeta", "lambda"))
    if (array[:, 0] < 0).any():
        raise ValueError(f"{name}: eta must be >= 0")
    if (array[:, 1] < 1).any():
        raise ValueError(f"{name}: zeta must be >= 1")
    if not np.isin(array[:, 2], (-1.0, 1.0)).all():
        raise ValueError(f"{name}: lambda must be +1 or -1")
    return array


@hookimpl
def atomdesc_families():
    return [ACSF]
