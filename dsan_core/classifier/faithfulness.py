"""Does the network depend on what a map (attention or Grad-CAM) highlights?

`deletion_drop`: P(COVID) of the scan minus P(COVID) with the map's top `fraction` of
lung voxels set to 0 (air outside the lung, as the pre-processing masks it), a deletion
test (Petsiuk et al. 2018). `deletion_test` adds its control: the same number of voxels
of the region (the lung) deleted at random, so a drop is read against what removing
any lung tissue of that size does. Whether a map points at the lesions at all is
`dsan_core.evaluation.faithfulness` (mass inside the mask, pointing game).
Maps, images and masks are (z, y, x) on one grid; maps float in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dsan_core.classifier.inference import autocast_for, evaluating, to_network_input
from dsan_core.classifier.network import DSANet
from dsan_core.errors import InputError


def _same_shape(a: np.ndarray, b: np.ndarray, what: str, scan: str | None) -> None:
    if a.shape != b.shape:
        raise InputError(f"expected the {what} in the map's shape {a.shape}, found {b.shape}",
                         scan=scan)


def _top_voxels(map_: np.ndarray, inside: np.ndarray, n_delete: int) -> np.ndarray:
    """Flat indices of the n_delete voxels of `inside` ranked highest by the map; equal
    map values are deleted in voxel order (a stable ranking)."""
    order = np.argsort(-np.asarray(map_, dtype=np.float64).ravel()[inside], kind="stable")
    return inside[order[:n_delete]]


def _probabilities(model: DSANet, images: list[np.ndarray], device: torch.device,
                   mixed_precision: bool) -> np.ndarray:
    batch = torch.from_numpy(np.stack([np.asarray(i, np.float32) for i in images]))[:, None]
    with evaluating(model), torch.no_grad(), autocast_for(device, mixed_precision):
        probs = torch.sigmoid(model(to_network_input(batch, device)).logit.float())
    return probs.cpu().numpy().reshape(-1).astype(np.float64)


def _deleted(image: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    out = np.array(image, dtype=np.float32, copy=True)
    out.ravel()[voxels] = 0.0
    return out


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
    probs = _probabilities(model, [np.asarray(image), _deleted(
        image, _top_voxels(map_, inside, n_delete))], torch.device(device), mixed_precision)
    return float(probs[0] - probs[1])


@dataclass(frozen=True)
class DeletionResult:
    """P(COVID) of the scan minus P(COVID) after deleting the map's top voxels
    (`drop`) or as many random voxels of the region (`random_drop`, the control)."""

    drop: float
    random_drop: float
    n_deleted: int


def deletion_test(
    model: DSANet,
    image: np.ndarray,
    map_: np.ndarray,
    region: np.ndarray,
    *,
    fraction: float,
    rng: np.random.Generator,
    device: torch.device,
    mixed_precision: bool = True,
    scan: str | None = None,
) -> DeletionResult:
    """The deletion test with its random control inside `region` (the lung mask): the
    top `fraction` of the region's voxels by `map_`, and the same number drawn from the
    region with `rng`, set to 0 (air outside the lung, as the pre-processing masks it).
    NaN drops when the region is empty. One forward pass of 3 volumes."""
    _same_shape(map_, image, "image", scan)
    _same_shape(np.asarray(region), image, "region", scan)
    if not 0 < fraction <= 1:
        raise InputError(f"expected a fraction in (0, 1], found {fraction}", scan=scan)
    inside = np.flatnonzero(np.asarray(region) != 0)
    n_delete = int(round(fraction * inside.size))
    if n_delete == 0:
        return DeletionResult(float("nan"), float("nan"), 0)
    top = _top_voxels(map_, inside, n_delete)
    random = rng.choice(inside, size=n_delete, replace=False)
    probs = _probabilities(model, [np.asarray(image), _deleted(image, top),
                                   _deleted(image, random)],
                           torch.device(device), mixed_precision)
    return DeletionResult(float(probs[0] - probs[1]), float(probs[0] - probs[2]), n_delete)
