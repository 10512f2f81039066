"""DescriptorResult: one layout for the output of every family."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class DescriptorResult:
    """Features of one structure, with optional sparse gradients.

    Attributes
    ----------
    features : (n_centers, n_features) float64
    centers : (n_centers,) atom indices of the rows, or (n_centers, 3) points where
        the family takes points as centres
    n_atoms : number of atoms of the structure
    feature_labels : one tuple per column (see ``Descriptor.feature_label_names``)
    gradient_pairs : (n_pairs, 2) int64, rows ``(row of features, atom index)``
        sorted by row then atom: every (centre, atom) pair that interacts
    gradient_values : (n_pairs, 3, n_features) float64,
        ``gradient_values[p, x, f] = d features[row, f] / d positions[atom, x]``
    strain_gradients : (n_centers, 3, 3, n_features) float64,
        ``strain_gradients[c, a, b, f] = d features[c, f] / d eps_ab`` for the
        homogeneous strain ``r -> (1 + eps) r`` of positions and cell.
    """

    features: np.ndarray
    centers: np.ndarray
    n_atoms: int
    feature_labels: tuple[tuple[Any, ...], ...] = ()
    gradient_pairs: np.ndarray | None = None
    gradient_values: np.ndarray | None = None
    strain_gradients: np.ndarray | None = None
    hypers: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    def dense_gradients(self) -> np.ndarray:
        """Gradients as a dense ``(n_centers, n_atoms, 3, n_features)`` array (DScribe's layout).

        This is O(n_centers × n_atoms) memory: use it for small systems only.
        """
        if self.gradient_pairs is None or self.gradient_values is None:
            raise ValueError("this result has no gradients; compute with gradients=True")
        dense = np.zeros((len(self.centers), self.n_atoms, 3, self.n_features))
        dense[self.gradient_pairs[:, 0], self.gradient_pairs[:, 1]] = self.gradient_values
        return dense

    def split(self, centers: list[np.ndarray], atom_start: np.ndarray) -> list[DescriptorResult]:
        """Cut a result of several molecules computed together into one per molecule.

        :param centers: each molecule's centres (its own atom indices), in row order.
        :param atom_start: first atom of each molecule in the merged system (and the total).
        """
        rows = np.zeros(len(centers) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in centers], out=rows[1:])
        if self.gradient_pairs is not None:
            pair_start = np.searchsorted(self.gradient_pairs[:, 0], rows)
        # Python ints: indexing numpy scalars costs more, once per small molecule
        row_start, first_atom = rows.tolist(), np.asarray(atom_start).tolist()
        parts = []
        for k, local in enumerate(centers):
            r0, r1 = row_start[k], row_start[k + 1]
            part = DescriptorResult(self.features[r0:r1], local,
                                    first_atom[k + 1] - first_atom[k], self.feature_labels)
            if self.gradient_pairs is not None and self.gradient_values is not None:
                p0, p1 = pair_start[k], pair_start[k + 1]
                part.gradient_pairs = self.gradient_pairs[p0:p1] - [r0, first_atom[k]]
                part.gradient_values = self.gradient_values[p0:p1]
            if self.strain_gradients is not None:
                part.strain_gradients = self.strain_gradients[r0:r1]
            parts.append(part)
        return parts

    def reduce(self, how: str = "mean") -> DescriptorResult:
        """Per-structure features: the mean (``"mean"``) or sum (``"sum"``) over centres.

        Gradients and strain gradients are reduced the same way, so they stay
        the derivatives of the reduced features.
        """
        if how not in ("mean", "sum"):
            raise ValueError(f"reduce takes 'mean' or 'sum', got {how!r}")
        scale = 1.0 / len(self.centers) if how == "mean" else 1.0
        pairs = values = strain = None
        if self.gradient_pairs is not None and self.gradient_values is not None:
            atoms, inverse = np.unique(self.gradient_pairs[:, 1], return_inverse=True)
            # each atom's pairs summed in their order, as a sparse product (np.add.at
            # was most of an averaged bispectrum's gradient call)
            from scipy import sparse  # not at import: it takes 0.14 s

            n_pairs, width = len(inverse), 3 * self.n_features
            summing = sparse.csr_array((np.ones(n_pairs), (inverse, np.arange(n_pairs))),
                                       shape=(len(atoms), n_pairs))
            values = (summing @ self.gradient_values.reshape(n_pairs, width)).reshape(
                len(atoms), 3, self.n_features)
            values *= scale
            pairs = np.stack([np.zeros_like(atoms), atoms], axis=1)
        if self.strain_gradients is not None:
            strain = self.strain_gradients.sum(axis=0, keepdims=True) * scale
        return replace(
            self,
            features=self.features.sum(axis=0, keepdims=True) * scale,
            centers=np.array([-1]),
            gradient_pairs=pairs,
            gradient_values=values,
            strain_gradients=strain,
        )
