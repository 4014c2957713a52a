"""Lung and infection segmentation: VB-Net, a classical baseline, external masks,
and the infection ratio.

Conventions everywhere: arrays (z, y, x); spacings (x, y, z) mm (SimpleITK order);
images in HU; masks uint8 0/1; labels 0 background / 1 lung / 2 infection.
"""

from __future__ import annotations

from dsan_core.segmentation.classical import segment_classical
from dsan_core.segmentation.external import (
    ScanGeometry,
    binary_mask,
    external_masks,
    split_label_map,
    validate_external_mask,
)
from dsan_core.segmentation.inference import (
    masks_at,
    masks_from_probs,
    postprocess_masks,
    prepare_image,
    segment_volume,
    sliding_window_probs,
    volume_probs,
)
from dsan_core.segmentation.methods import SegmentedScan, segment_scan, segmenter_tag, spacing_of
from dsan_core.segmentation.metrics import dice, evaluate_segmentation
from dsan_core.segmentation.patches import PreparedCase, SegCase, SegVolume, prepare_case
from dsan_core.segmentation.ratio import RatioResult, infection_ratio
from dsan_core.segmentation.training import (
    EpochReport,
    TrainResult,
    best_weights,
    infection_threshold_of,
    load_vbnet,
    train_vbnet,
)
from dsan_core.segmentation.vbnet import BottleneckBlock, VBNet, build_vbnet

__all__ = [
    "BottleneckBlock",
    "EpochReport",
    "PreparedCase",
    "RatioResult",
    "ScanGeometry",
    "SegCase",
    "SegmentedScan",
    "SegVolume",
    "TrainResult",
    "VBNet",
    "best_weights",
    "binary_mask",
    "build_vbnet",
    "dice",
    "evaluate_segmentation",
    "external_masks",
    "infection_ratio",
    "infection_threshold_of",
    "load_vbnet",
    "masks_at",
    "masks_from_probs",
    "postprocess_masks",
    "prepare_case",
    "prepare_image",
    "segment_classical",
    "segment_scan",
    "segment_volume",
    "segmenter_tag",
    "sliding_window_probs",
    "spacing_of",
    "split_label_map",
    "train_vbnet",
    "validate_external_mask",
    "volume_probs",
]
