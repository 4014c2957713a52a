"""Attention maps of the trained models on the COVID test scans: faithfulness scores
inside the lung with the deletion test (every fold model) and the Fig. 5 panel (fold
0's models). Reads checkpoints, pre-processed inputs and lung masks; the scoring, the
deletion test and the figure are dsan_core's."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from dsan_core.branches import ATT_SS, ATT_US, RN34_US
from dsan_core.classifier import ClassifierCase, attention_map, load_classifier
from dsan_core.classifier.faithfulness import deletion_test
from dsan_core.config import EvaluationConfig, TrainConfig
from dsan_core.evaluation.faithfulness import SCORE_COLUMNS, score_attention
from dsan_core.groups import LABEL_COVID
from dsan_core.plots.evaluation import AttentionCase, attention_panel_figure
from storage.checkpoints import load_checkpoint
from storage.volumes import open_npy, read_geometry
from tasks.contract import StageRun
from tasks.progress import StageProgress

#: The map each branch is judged by: its online attention, or Grad-CAM for the baseline.
MAP_KIND = {ATT_US: "attention", ATT_SS: "attention", RN34_US: "grad_cam"}


@dataclass(frozen=True)
class MapCase:
    """A COVID test scan's classifier case and its lung mask (loaded on demand)."""

    case: ClassifierCase
    lung: Callable[[], np.ndarray]


def test_covid_cases(run: StageRun, preprocessed: pd.DataFrame, groups: pd.DataFrame,
                     splits: pd.DataFrame) -> list[MapCase]:
    """The COVID scans of the test set that were pre-processed, as classifier cases."""
    test = set(splits.loc[splits["set"] == "test", "scan_id"])
    covid = groups[(groups["label"] == LABEL_COVID) & groups["scan_id"].isin(test)]
    rows = preprocessed.set_index("scan_id")

    def path(scan_id: str, column: str) -> Any:
        return run.layout.resolve(rows.loc[scan_id, column])

    return [MapCase(ClassifierCase(scan_id, 1, str(group),
                                   partial(open_npy, path(scan_id, "input_path")),
                                   partial(open_npy, path(scan_id, "infection_path"))),
                    partial(open_npy, path(scan_id, "lung_path")))
            for scan_id, group in sorted(zip(covid["scan_id"], covid["sampling_group"],
                                             strict=True))
            if scan_id in rows.index]


def _control_rng(seed: int, scan_id: str, branch: str, fold: int) -> np.random.Generator:
    """The random-deletion control's generator: one per map, from its names, so a map's
    control does not depend on which other maps were scored."""
    digest = hashlib.sha256(f"{scan_id}|{branch}|{fold}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def map_scores(run: StageRun, runs: pd.DataFrame, cases: list[MapCase],
               config: TrainConfig, evaluation: EvaluationConfig, device: str, keep: set[str]
               ) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """Faithfulness scores (inside the lung) and the deletion test of every fold model's
    map on every case; and fold 0's maps of the scans in `keep`, by (scan id, branch),
    for the figure."""
    records: list[dict[str, Any]] = []
    kept: dict[tuple[str, str], np.ndarray] = {}
    masks = {c.case.scan_id: np.asarray(c.case.infection()) for c in cases}
    lungs = {c.case.scan_id: np.asarray(c.lung()) for c in cases}
    with StageProgress("attention maps of the test COVID scans", len(runs),
                       unit="models") as progress:
        for model_row in runs.itertuples(index=False):
            checkpoint = load_checkpoint(run.layout.resolve(model_row.checkpoint_path))
            model = load_classifier(checkpoint, config, torch.device(device))
            for map_case in cases:
                case = map_case.case
                heat = attention_map(model, case, device=torch.device(device),
                                     kind=MAP_KIND[model_row.branch],  # type: ignore[arg-type]
                                     mixed_precision=config.mixed_precision)
                lung = lungs[case.scan_id]
                score = score_attention(heat, masks[case.scan_id], lung, scan=case.scan_id)
                deletion = deletion_test(
                    model, np.asarray(case.image(), dtype=np.float32), heat, lung,
                    fraction=evaluation.deletion_fraction,
                    rng=_control_rng(evaluation.seed, case.scan_id, str(model_row.branch),
                                     int(model_row.fold)),
                    device=torch.device(device), mixed_precision=config.mixed_precision,
                    scan=case.scan_id)
                records.append({"scan_id": case.scan_id, "model": model_row.branch,
                                "fold": int(model_row.fold), "mass_inside": score.mass_inside,
                                "pointing_hit": score.pointing_hit, "chance": score.chance,
                                "lift": score.lift, "deletion_drop": deletion.drop,
                                "random_drop": deletion.random_drop})
                if int(model_row.fold) == 0 and case.scan_id in keep:
                    kept[(case.scan_id, str(model_row.branch))] = heat
            progress.advance()
    return pd.DataFrame(records, columns=list(SCORE_COLUMNS)), kept


def attention_panel(run: StageRun, chosen: list[str], maps: dict[tuple[str, str], np.ndarray],
                    preprocessed: pd.DataFrame, groups: pd.DataFrame) -> Any:
    """The Fig. 5-style figure of the chosen scans (None when a map is missing)."""
    rows = preprocessed.set_index("scan_id")
    bins = groups.set_index("scan_id")["analysis_bin"]
    cases = []
    for scan_id in chosen:
        if any((scan_id, b) not in maps for b in (RN34_US, ATT_US, ATT_SS)):
            continue
        row = rows.loc[scan_id]
        spacing = read_geometry(run.layout.resolve(row["geometry_path"]))["final_spacing"]
        cases.append(AttentionCase(
            scan_id, str(bins.loc[scan_id]),
            np.asarray(open_npy(run.layout.resolve(row["input_path"])), dtype=np.float32),
            np.asarray(open_npy(run.layout.resolve(row["lung_path"]))),
            np.asarray(open_npy(run.layout.resolve(row["infection_path"]))),
            maps[(scan_id, RN34_US)], maps[(scan_id, ATT_US)], maps[(scan_id, ATT_SS)],
            tuple(float(v) for v in spacing)))  # type: ignore[arg-type]
    return attention_panel_figure(cases) if cases else None
