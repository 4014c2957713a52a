"""Connected-component clean-up shared by every segmenter."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def keep_largest_two(mask: np.ndarray, *, min_second_fraction: float = 0.1,
                     min_voxels: int = 0) -> np.ndarray:
    """The two lungs of a (z, y, x) mask, as bool: its largest connected component, and
    the second largest when that is at least `min_second_fraction` of the first (one
    component when the lungs touch or the second is a stray blob). Components below
    `min_voxels` are ignored; none left gives an empty mask."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.asarray(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    order = [int(i) for i in np.argsort(sizes)[::-1] if sizes[i] >= min_voxels]
    keep = order[:1]
    if len(order) > 1 and sizes[order[1]] >= min_second_fraction * sizes[order[0]]:
        keep.append(order[1])
    return np.isin(labels, np.asarray(keep, dtype=np.int64) + 1)
