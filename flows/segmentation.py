"""The segmentation flow: train the VB-Net when no model exists for the current
config and data (whatever the method, when there is ground truth to train on), segment
every scan, then groups, figures and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow

from dsan_core.config import GroupsConfig, RuntimeConfig, SegmentationConfig
from dsan_core.errors import StageError
from flows.runtime import off_main_thread
from tasks.groups import GroupsOutcome, assign_groups_task
from tasks.segmentation import (
    STAGE,
    TRAIN_STAGE,
    SegmentOutcome,
    TrainSegOutcome,
    segment_scans_task,
    train_segmenter_task,
)
from tasks.segmentation_eval import (
    FiguresOutcome,
    SegEvalOutcome,
    evaluate_segmentation_task,
    segmentation_figures_task,
)


@dataclass(frozen=True)
class SegmentationResult:
    device: str
    model: TrainSegOutcome | None
    masks: SegmentOutcome
    groups: GroupsOutcome
    figures: FiguresOutcome
    evaluation: SegEvalOutcome

    def summary(self) -> list[str]:
        masks = self.masks
        lines = [
            f"segmenter {masks.method_tag} on {self.device}: segmented {masks.segmented}, "
            f"from cache {masks.cached}, failed {masks.failed}",
            "sampling groups: " + ", ".join(f"{k} {v}" for k, v in
                                            self.groups.sampling_groups.items()),
            f"figures: {self.figures.overlays} overlays + ratio histogram",
        ]
        if self.model is not None:
            m = self.model
            lines.append(f"VB-Net {m.model_version}: {m.n_train} train / {m.n_val} val scans, "
                         f"best epoch {m.best_epoch}, "
                         f"{'cached' if m.cache_hit else 'trained now'}")
        for method, s in self.evaluation.summary.items():
            lines.append(
                f"held-out evaluation ({self.evaluation.scans} scans), {method}: median lung "
                f"Dice {s.lung_dice:.4f}, infection Dice {s.infection_dice:.4f}, "
                f"ratio error {100 * s.ratio_rel_error:.1f} %")
        card = self.evaluation.predict_segmenter
        if card:
            lines.append(f"dsan predict segments studies without masks with {card['tag']}"
                         + (" (weaker than the masks the classifier trains on)"
                            if card.get("weaker") else ""))
        return lines


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


@flow(name=TRAIN_STAGE, validate_parameters=False)
def train_segmenter_flow(config: SegmentationConfig, runtime: RuntimeConfig, data_root: Path,
                         run_id: str | None = None) -> TrainSegOutcome | None:
    return off_main_thread(train_segmenter_task, data_root, config, pick_device(runtime), run_id)


@flow(name=STAGE, validate_parameters=False)
def segmentation_flow(config: SegmentationConfig, groups: GroupsConfig, runtime: RuntimeConfig,
                      data_root: Path, run_id: str | None = None) -> SegmentationResult:
    device = pick_device(runtime)
    # Every method gets a VB-Net when there is ground truth to train it on: method vbnet
    # segments with it, the others hand it to `dsan predict` and `dsan masks export`.
    # The VB-Net's training and inference off the main thread: see `off_main_thread`.
    model = off_main_thread(train_segmenter_task, data_root, config, device, run_id)
    masks = off_main_thread(segment_scans_task, data_root, config, model, device, run_id)
    grouped = assign_groups_task(data_root, groups, run_id)
    figures = segmentation_figures_task(data_root, config, run_id)
    evaluation = off_main_thread(evaluate_segmentation_task, data_root, config, model, device,
                                 run_id)
    return SegmentationResult(device, model, masks, grouped, figures, evaluation)
