"""The attention-map loop of the evaluation on a tiny untrained network (CPU): one row
per model and scan, fold 0's maps kept for the panel, the control seeded per map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dsan_core.branches import ATT_SS, ATT_US, RN34_US
from dsan_core.classifier.checkpoints import CHECKPOINT_FORMAT, build_classifier
from dsan_core.config import EvaluationConfig, TrainConfig
from dsan_core.evaluation import attention_maps
from dsan_core.evaluation.attention_maps import (
    MapCase,
    MapModel,
    PanelScan,
    attention_panel,
    control_rng,
    map_scores,
    scored_map,
)
from dsan_core.evaluation.faithfulness import SCORE_COLUMNS, score_attention
from dsan_core.training_loop import model_state
from tests.dsan_core.classifier.cases import write_case

CONFIG = TrainConfig(width=4, layers=(1, 1, 1, 1), mixed_precision=False)
SHAPE = (16, 16, 16)


def _checkpoint(seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    return {"format": CHECKPOINT_FORMAT, "config": CONFIG.model_dump(mode="json"),
            "best_model": model_state(build_classifier(CONFIG))}


def _cases(folder: Path) -> list[MapCase]:
    lung = np.ones(SHAPE, np.uint8)
    return [MapCase(write_case(folder, f"S{i}", "covid_large", 1, seed=i), lambda: lung)
            for i in range(2)]


def test_every_model_maps_every_case_and_fold_0_keeps_the_panels(tmp_path: Path) -> None:
    models = [MapModel(fold, branch, lambda s=seed: _checkpoint(s))
              for seed, (fold, branch) in enumerate([(0, ATT_US), (0, RN34_US), (1, ATT_SS)])]
    calls: list[int] = []
    scores, kept = map_scores(models, _cases(tmp_path), CONFIG, EvaluationConfig(),
                              torch.device("cpu"), keep={"S1"},
                              on_model=lambda: calls.append(1))
    assert list(scores.columns) == list(SCORE_COLUMNS) and len(scores) == 6
    assert len(calls) == 3
    assert sorted(kept) == [("S1", ATT_US), ("S1", RN34_US)]
    assert kept[("S1", ATT_US)].shape == SHAPE
    assert sorted(zip(scores["model"], scores["fold"], scores["scan_id"], strict=True)) == \
        sorted((m.branch, m.fold, s) for m in models for s in ("S0", "S1"))
    # A panel needs every branch's map: att_ss is fold 1's here, so there is none.
    scan = PanelScan("S1", ">0.030", lambda: (np.zeros(SHAPE, np.float32),) * 3
                     + ((1.0, 1.0, 1.0),))  # type: ignore[arg-type,return-value]
    assert attention_panel([scan], kept) is None


def test_the_deletion_control_depends_on_the_map_only() -> None:
    a = control_rng(3, "S1", ATT_US, 0).integers(1 << 30, size=4)
    assert (a == control_rng(3, "S1", ATT_US, 0).integers(1 << 30, size=4)).all()
    assert (a != control_rng(3, "S1", ATT_US, 1).integers(1 << 30, size=4)).any()


def test_a_branch_is_judged_by_its_own_kind_of_map(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The attention branches by their online attention, RN34 + US by Grad-CAM; the score
    # is that map's inside the lung.
    kinds: list[str] = []
    heat = np.zeros(SHAPE, np.float32)
    heat[:8] = 1.0

    def fake_map(model: Any, case: Any, *, device: Any, kind: str,
                 mixed_precision: bool) -> np.ndarray:
        kinds.append(kind)
        return heat

    monkeypatch.setattr(attention_maps, "attention_map", fake_map)
    case = _cases(tmp_path)[0].case
    infection = np.asarray(case.infection())
    lung = np.ones(SHAPE, np.uint8)
    model = build_classifier(CONFIG).eval()
    for branch in (ATT_US, ATT_SS, RN34_US):
        got, score = scored_map(model, branch, case, infection, lung, CONFIG,
                                torch.device("cpu"))
        assert got is heat
        assert score == score_attention(heat, infection, lung, scan=case.scan_id)
    assert kinds == ["attention", "attention", "grad_cam"]
