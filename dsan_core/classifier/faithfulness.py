"""Does the network depend on what a map (attention or Grad-CAM) highlights?

`deletion_drop`: P(COVID) of the scan minus P(COVID) with the map's top `fraction` of
lung voxels set to 0 (air outside the lung, as the pre-processing masks it), a deletion
test (Petsiuk et al. 2018). Whether a map points at the lesions at all is
`dsan_core.evaluation.faithfulness` (mass inside the mask, pointing game).
Maps, images and masks are (z, y, x) on one grid; maps float in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from dsan_core.classifier.inference import autocast_for, evaluating, to_network_input
from dsan_core.classifier.network import DSANet
from dsan_core.errors import InputError


def _same_shape(a: np.ndarray, b: np.ndarray, what: str, scan: str | None) -> None:
    if a.shape != b.shape:
        raise InputError(f"expected the {what} in the map's shape {a.shape}, found {b.shape}",
                         scan=scan)


def deletion_drop(
    model: DSANet,
    image: np.ndarray,
    map_: np.ndarray,
    *,
    fraction: float,
    device: torch.device,
    mixed_precision: bool = True,
    scan: str | None = None,
) -> float:
    """P(COVID | image) - P(COVID | image with the top `fraction` of its non-zero voxels,
    ranked by `map_`, set to 0). Larger: the map marks what the decision rests on."""
    _same_shape(map_, image, "image", scan)
    if not 0 < fraction <= 1:
        raise InputError(f"expected a fraction in (0, 1], found {fraction}", scan=scan)
    inside = np.flatnonzero(np.asarray(image) != 0)
    n_delete = int(round(fraction * inside.size))
    deleted = np.array(image, dtype=np.float32, copy=True)
    if n_delete:
        # Stable ranking: equal map values are deleted in voxel order.
        order = np.argsort(-np.asarray(map_, dtype=np.float64).ravel()[inside], kind="stable")
        deleted.ravel()[inside[order[:n_delete]]] = 0.0
    device = torch.device(device)
    batch = torch.from_numpy(np.stack([np.asarray(image, np.float32), deleted]))[:, None]
    with evaluating(model), torch.no_grad(), autocast_for(device, mixed_precision):
        probs = torch.sigmoid(model(to_network_input(batch, device)).logit.float())
    return float(probs[0] - probs[1])
