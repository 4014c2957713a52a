"""Attention maps of the trained models on the COVID test scans: faithfulness scores
(every fold model) and the Fig. 5 panel (fold 0's models). Reads checkpoints and
pre-processed inputs; the scoring and the figure are dsan_core's."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from dsan_core.branches import ATT_SS, ATT_US, RN34_US
from dsan_core.classifier import ClassifierCase, attention_map, load_classifier
from dsan_core.config import TrainConfig
from dsan_core.evaluation.faithfulness import SCORE_COLUMNS, score_attention
from dsan_core.groups import LABEL_COVID
from dsan_core.plots.evaluation import AttentionCase, attention_panel_figure
from storage.checkpoints import load_checkpoint
from storage.volumes import open_npy, read_geometry
from tasks.contract import StageRun
from tasks.progress import StageProgress

#: The map each branch is judged by: its online attention, or Grad-CAM for the baseline.
MAP_KIND = {ATT_US: "attention", ATT_SS: "attention", RN34_US: "grad_cam"}


def test_covid_cases(run: StageRun, preprocessed: pd.DataFrame, groups: pd.DataFrame,
                     splits: pd.DataFrame) -> list[ClassifierCase]:
    """The COVID scans of the test set that were pre-processed, as classifier cases."""
    test = set(splits.loc[splits["set"] == "test", "scan_id"])
    covid = groups[(groups["label"] == LABEL_COVID) & groups["scan_id"].isin(test)]
    rows = preprocessed.set_index("scan_id")
    return [ClassifierCase(scan_id, 1, str(group),
                           partial(open_npy, run.layout.resolve(rows.loc[scan_id, "input_path"])),
                           partial(open_npy, run.layout.resolve(
                               rows.loc[scan_id, "infection_path"])))
            for scan_id, group in sorted(zip(covid["scan_id"], covid["sampling_group"],
                                             strict=True))
            if scan_id in rows.index]


def map_scores(run: StageRun, runs: pd.DataFrame, cases: list[ClassifierCase],
               config: TrainConfig, device: str, keep: set[str]
               ) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """Faithfulness scores of every fold model's map on every case; and fold 0's maps of
    the scans in `keep`, by (scan id, branch), for the figure."""
    records: list[dict[str, Any]] = []
    kept: dict[tuple[str, str], np.ndarray] = {}
    masks = {case.scan_id: np.asarray(case.infection()) for case in cases}
    with StageProgress("attention maps of the test COVID scans", len(runs),
                       unit="models") as progress:
        for model_row in runs.itertuples(index=False):
            checkpoint = load_checkpoint(run.layout.resolve(model_row.checkpoint_path))
            model = load_classifier(checkpoint, config, torch.device(device))
            for case in cases:
                heat = attention_map(model, case, device=torch.device(device),
                                     kind=MAP_KIND[model_row.branch],  # type: ignore[arg-type]
                                     mixed_precision=config.mixed_precision)
                score = score_attention(heat, masks[case.scan_id], scan=case.scan_id)
                records.append({"scan_id": case.scan_id, "model": model_row.branch,
                                "fold": int(model_row.fold), "mass_inside": score.mass_inside,
                                "pointing_hit": score.pointing_hit})
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
