"""One scan through the configured segmenter: VB-Net, the classical baseline, or
masks made elsewhere; then its infection ratio.

Images are SimpleITK (HU); returned masks uint8 (z, y, x) on the scan's grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from dsan_core.config import SegmentationConfig
from dsan_core.errors import ModelError
from dsan_core.grid import ScanGeometry, check_same_grid
from dsan_core.segmentation.classical import segment_classical
from dsan_core.segmentation.external import external_masks
from dsan_core.segmentation.inference import segment_volume
from dsan_core.segmentation.ratio import RatioResult, infection_ratio


@dataclass(frozen=True)
class SegmentedScan:
    lung: np.ndarray  # uint8 0/1, (z, y, x)
    infection: np.ndarray  # uint8 0/1, inside the lung
    ratio: RatioResult


def segmenter_tag(config: SegmentationConfig, model_version: str | None) -> tuple[str, str]:
    """(mask folder tag, model version) of the configured segmenter; VB-Net needs the
    trained model's version (its training key), the classical method its settings."""
    if config.method == "vbnet":
        if model_version is None:
            raise ModelError("method vbnet needs a trained VB-Net, found none")
        return f"vbnet__{model_version}", model_version
    if config.method == "classical":
        version = config.classical.fingerprint()
        return f"classical__{version}", version
    return config.method, config.method  # external, ground_truth: imported masks


def spacing_of(image: sitk.Image) -> tuple[float, float, float]:
    x, y, z = image.GetSpacing()
    return (float(x), float(y), float(z))


def segment_scan(
    image: sitk.Image,
    config: SegmentationConfig,
    *,
    scan_id: str,
    model: torch.nn.Module | None = None,
    infection_threshold: float = 0.5,
    device: torch.device | None = None,
    external: Mapping[str, sitk.Image] | None = None,
) -> SegmentedScan:
    """Masks and infection ratio of one scan by `config.method`.

    vbnet: `model` (eval mode) on `device` at `infection_threshold`; external and
    ground_truth: the `external` masks ("lung" + "infection", or one "labels" map
    0/1/2), refused (MaskError) unless they lie on the scan's grid and hold only the
    expected values.
    """
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    spacing = spacing_of(image)
    if config.method == "vbnet":
        if model is None:
            raise ModelError(f"scan {scan_id}: method vbnet needs a trained VB-Net, found none")
        lung, infection = segment_volume(model, hu, spacing, config.vbnet,
                                         device or torch.device("cpu"),
                                         infection_threshold=infection_threshold)
    elif config.method == "classical":
        lung, infection = segment_classical(hu, spacing, config.classical, scan_id=scan_id)
    else:
        lung, infection = _external(image, external or {}, scan_id)
    ratio = infection_ratio(lung, infection, spacing, scan_id=scan_id)
    return SegmentedScan(lung, infection, ratio)


def _external(image: sitk.Image, masks: Mapping[str, sitk.Image],
              scan_id: str) -> tuple[np.ndarray, np.ndarray]:
    geometry = ScanGeometry.from_image(image)
    arrays = {}
    for kind, mask in masks.items():
        check_same_grid(ScanGeometry.from_image(mask), geometry, scan_id=scan_id,
                        kind="label map" if kind == "labels" else kind)
        arrays[kind] = sitk.GetArrayFromImage(mask)
    if "labels" in arrays:
        return external_masks(arrays["labels"], None, scan_id=scan_id)
    return external_masks(arrays["lung"], arrays["infection"], scan_id=scan_id)
