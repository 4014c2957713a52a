"""The segmentation flow: train the VB-Net when no model exists for the current
config and data, segment every scan, then groups, figures and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from dsan_core.config import GroupsConfig, RuntimeConfig, SegmentationConfig
from dsan_core.errors import StageError
from tasks.groups import assign_groups_task
from tasks.seg_report import evaluate_segmentation_task, segmentation_figures_task
from tasks.segmentation import segment_scans_task, train_segmenter_task


def pick_device(runtime: RuntimeConfig) -> str:
    """Placement: CUDA when asked for or available ("auto"), else CPU."""
    import torch

    if runtime.torch_threads:
        torch.set_num_threads(runtime.torch_threads)
    available = torch.cuda.is_available()
    if runtime.device == "auto":
        return "cuda" if available else "cpu"
    if runtime.device == "cuda" and not available:
        raise StageError(f"runtime.device is cuda, but torch {torch.__version__} sees no CUDA "
                         "device; set runtime.device to auto or cpu (or use a CPU profile)")
    return runtime.device


@flow(name="train-segmenter", validate_parameters=False)
def train_segmenter_flow(config: SegmentationConfig, runtime: RuntimeConfig, data_root: Path,
                         run_id: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = train_segmenter_task(data_root, config, pick_device(runtime), run_id)
    return result


@flow(name="segmentation", validate_parameters=False)
def segmentation_flow(config: SegmentationConfig, groups: GroupsConfig, runtime: RuntimeConfig,
                      data_root: Path, run_id: str | None = None) -> dict[str, Any]:
    device = pick_device(runtime)
    model = None
    if config.method == "vbnet":
        model = train_segmenter_task(data_root, config, device, run_id)
    masks = segment_scans_task(data_root, config, model, device, run_id)
    grouped = assign_groups_task(data_root, groups, run_id)
    figures = segmentation_figures_task(data_root, config, run_id)
    evaluation = evaluate_segmentation_task(data_root, config, run_id)
    summary = [
        f"segmenter {masks['method_tag']} on {device}: segmented {masks['segmented']}, "
        f"from cache {masks['cached']}, failed {masks['failed']}",
        "sampling groups: " + ", ".join(f"{k} {v}" for k, v in
                                        grouped["data"]["sampling_groups"].items()),
        f"figures: {figures['data']['overlays']} overlays + ratio histogram",
    ]
    for method, scores in evaluation["data"]["medians"].items():
        summary.append(
            f"held-out evaluation ({evaluation['data']['scans']} scans), {method}: median lung "
            f"Dice {scores['lung_dice']:.4f}, infection Dice {scores['infection_dice']:.4f}, "
            f"ratio error {100 * scores['ratio_rel_error']:.1f} %")
    return {"model": model, "masks": masks, "groups": grouped, "figures": figures,
            "evaluation": evaluation, "summary": summary}
