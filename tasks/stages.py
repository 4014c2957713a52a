"""The pipeline's stages, in order: the one name each has everywhere (the CLI command,
`--refresh` / `--until`, `dsan status`, flow and flow-run names, lineage), and the
internal cache labels each covers (its own, named like it, and those of its items and
side stages)."""

from __future__ import annotations

from tasks import (
    baselines,
    ensemble,
    evaluation,
    groups,
    ingest,
    preprocess,
    segmentation,
    segmentation_eval,
    splits,
    training,
    training_tables,
)

INGEST, TRAIN_SEG, SEGMENT, SPLIT = "ingest", "train-seg", "segment", "split"
PREPROCESS, TRAIN, ENSEMBLE, EVALUATE = "preprocess", "train", "ensemble", "evaluate"

#: Stage name -> the internal stage labels (cache and lineage) it covers; the first is
#: the stage's own label, the same as its name.
STAGES: dict[str, tuple[str, ...]] = {
    INGEST: (ingest.STAGE, ingest.SERIES_STAGE, ingest.GROUND_TRUTH_STAGE),
    TRAIN_SEG: (segmentation.TRAIN_STAGE,),
    SEGMENT: (segmentation.STAGE, segmentation.SCAN_STAGE, groups.STAGE,
              segmentation_eval.FIGURES_STAGE, segmentation_eval.EVAL_STAGE),
    SPLIT: (splits.STAGE, splits.AUDIT_STAGE),
    PREPROCESS: (preprocess.STAGE, preprocess.SCAN_STAGE),
    TRAIN: (training_tables.STAGE, training.TRAIN_STAGE, training.PREDICT_STAGE),
    ENSEMBLE: (ensemble.STAGE,),
    EVALUATE: (evaluation.STAGE, baselines.STAGE),
}
