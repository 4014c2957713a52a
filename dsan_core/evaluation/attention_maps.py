"""Attention maps of the trained models on the COVID test scans: each fold model's map
of each scan, scored inside the lung (`dsan_core.evaluation.faithfulness`) and put to
the deletion test (`dsan_core.classifier.faithfulness`); the maps of the scans shown in
the Fig. 5-style panel are kept (fold 0's models) and drawn with
`dsan_core.plots.evaluation.attention_panel_figure`.

Arrays are (z, y, x) on the network input's grid: the image float32 in [0, 1], masks
0/1, maps in [0, 1].
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from dsan_core.branches import ATT_SS, ATT_US, RN34_US
from dsan_core.classifier import ClassifierCase, DSANet, attention_map, load_classifier
from dsan_core.classifier.faithfulness import deletion_test
from dsan_core.classifier.inference import MapKind
from dsan_core.config import EvaluationConfig, TrainConfig
from dsan_core.evaluation.faithfulness import SCORE_COLUMNS, FaithfulnessScore, score_attention
from dsan_core.plots.evaluation import AttentionCase, attention_panel_figure

#: The map each branch is judged by: its online attention, or Grad-CAM for the baseline.
MAP_KIND: dict[str, MapKind] = {ATT_US: "attention", ATT_SS: "attention",
                                 RN34_US: "grad_cam"}
#: The models of the panel's columns.
PANEL_BRANCHES: tuple[str, str, str] = (RN34_US, ATT_US, ATT_SS)


@dataclass(frozen=True)
class MapCase:
    """A COVID test scan's classifier case and its lung mask (loaded on demand)."""

    case: ClassifierCase
    lung: Callable[[], np.ndarray]


@dataclass(frozen=True)
class MapModel:
    """A fold model whose maps are scored; `checkpoint` loads its checkpoint."""

    fold: int
    branch: str
    checkpoint: Callable[[], dict[str, Any]]


def control_rng(seed: int, scan_id: str, branch: str, fold: int) -> np.random.Generator:
    """The random-deletion control's generator: one per map, from its names, so a map's
    control does not depend on which other maps were scored."""
    digest = hashlib.sha256(f"{scan_id}|{branch}|{fold}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def scored_map(model: DSANet, branch: str, case: ClassifierCase, infection: np.ndarray,
               lung: np.ndarray, config: TrainConfig, device: torch.device,
               ) -> tuple[np.ndarray, FaithfulnessScore]:
    """The map `branch` is judged by (`MAP_KIND`) of one case, and its faithfulness
    inside the lung."""
    heat = attention_map(model, case, device=device, kind=MAP_KIND[branch],
                         mixed_precision=config.mixed_precision)
    return heat, score_attention(heat, infection, lung, scan=case.scan_id)


def map_scores(models: Sequence[MapModel], cases: Sequence[MapCase], config: TrainConfig,
               evaluation: EvaluationConfig, device: torch.device, keep: set[str],
               on_model: Callable[[], None] = lambda: None,
               ) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """Faithfulness scores (inside the lung) and the deletion test of every model's map
    on every case (`SCORE_COLUMNS`); and fold 0's maps of the scans in `keep`, by (scan
    id, branch), for the panel. `on_model` is called after each model (progress)."""
    records: list[dict[str, Any]] = []
    kept: dict[tuple[str, str], np.ndarray] = {}
    masks = {c.case.scan_id: np.asarray(c.case.infection()) for c in cases}
    lungs = {c.case.scan_id: np.asarray(c.lung()) for c in cases}
    for spec in models:
        model = load_classifier(spec.checkpoint(), config, device)
        for map_case in cases:
            case = map_case.case
            lung = lungs[case.scan_id]
            heat, score = scored_map(model, spec.branch, case, masks[case.scan_id], lung,
                                     config, device)
            deletion = deletion_test(
                model, np.asarray(case.image(), dtype=np.float32), heat, lung,
                fraction=evaluation.deletion_fraction,
                rng=control_rng(evaluation.seed, case.scan_id, spec.branch, spec.fold),
                device=device, mixed_precision=config.mixed_precision, scan=case.scan_id)
            records.append({"scan_id": case.scan_id, "model": spec.branch, "fold": spec.fold,
                            "mass_inside": score.mass_inside,
                            "pointing_hit": score.pointing_hit, "chance": score.chance,
                            "lift": score.lift, "deletion_drop": deletion.drop,
                            "random_drop": deletion.random_drop})
            if spec.fold == 0 and case.scan_id in keep:
                kept[(case.scan_id, spec.branch)] = heat
        on_model()
    return pd.DataFrame(records, columns=list(SCORE_COLUMNS)), kept


@dataclass(frozen=True)
class PanelScan:
    """A scan of the panel: its analysis bin, network input, masks and spacing (x, y, z)
    mm, loaded on demand."""

    scan_id: str
    analysis_bin: str
    load: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]]


def attention_panel(scans: Sequence[PanelScan],
                    maps: dict[tuple[str, str], np.ndarray]) -> Any:
    """The Fig. 5-style figure of the scans with a map of every panel branch (None when
    no scan has them all)."""
    cases = []
    for scan in scans:
        if any((scan.scan_id, b) not in maps for b in PANEL_BRANCHES):
            continue
        image, lung, infection, spacing = scan.load()
        grad_cam, attention_us, attention_ss = (maps[(scan.scan_id, b)] for b in PANEL_BRANCHES)
        cases.append(AttentionCase(scan.scan_id, scan.analysis_bin, image, lung, infection,
                                   grad_cam, attention_us, attention_ss, spacing))
    return attention_panel_figure(cases) if cases else None
