"""Explicit pyarrow schemas of every Parquet table. Reading a table validates it.

Privacy: no table holds a patient name, patient id, birth date, raw DICOM UID or
raw input path. Ids are HMAC pseudonyms; paths are relative to the data root.
"""

from __future__ import annotations

import pyarrow as pa

_str = pa.string()

SCANS = pa.schema(
    [
        ("scan_id", _str),
        ("patient_id", _str),
        ("study_id", _str),
        ("series_id", _str),
        ("label", _str),  # COVID | CAP
        ("site", _str),
        ("acquisition_date", pa.date32()),
        ("manufacturer", _str),
        ("age_years", pa.float64()),  # years, 2 decimals (dsan_core.dicom.demographics)
        ("sex", _str),
        ("n_slices", pa.int32()),
        ("shape_z", pa.int32()),
        ("shape_y", pa.int32()),
        ("shape_x", pa.int32()),
        ("spacing_x", pa.float64()),
        ("spacing_y", pa.float64()),
        ("spacing_z", pa.float64()),
        ("slice_thickness_mm", pa.float64()),
        ("spacing_spread", pa.float64()),
        ("gantry_tilt_deg", pa.float64()),
        ("geometry_flags", _str),  # comma-separated flags, "" when none
        ("volume_path", _str),
        ("volume_hash", _str),
        ("source_hash", _str),
        ("label_split", _str),
    ]
)

SERIES = pa.schema(
    [
        ("series_id", _str),
        ("study_id", _str),
        ("patient_id", _str),
        ("status", _str),  # chosen | skipped | rejected
        ("reason", _str),
        ("message", _str),
        ("modality", _str),
        ("n_files", pa.int32()),
        ("slice_thickness_mm", pa.float64()),
        ("source_hash", _str),
    ]
)

QUARANTINE = pa.schema(
    [
        ("kind", _str),  # file | series | study | label
        ("reason", _str),
        ("message", _str),
        ("n_files", pa.int32()),
        ("study_id", _str),
        ("series_id", _str),
        ("source_hash", _str),
    ]
)

GROUND_TRUTH = pa.schema(
    [
        ("scan_id", _str),
        ("lung_path", _str),
        ("lung_hash", _str),
        ("infection_path", _str),
        ("infection_hash", _str),
    ]
)

INFECTION = pa.schema(
    [
        ("scan_id", _str),
        ("lung_ml", pa.float64()),
        ("infection_ml", pa.float64()),
        ("infection_ratio", pa.float64()),
        ("method", _str),
        ("model_version", _str),
        # VB-Net's infection probability threshold (null for classical / external masks).
        ("infection_threshold", pa.float64()),
        ("lung_path", _str),
        ("lung_hash", _str),
        ("infection_path", _str),
        ("infection_hash", _str),
    ]
)

GROUPS = pa.schema(
    [
        ("scan_id", _str),
        ("label", _str),
        ("infection_ratio", pa.float64()),
        ("sampling_group", _str),
        ("analysis_bin", _str),
        ("ensemble_band", _str),
    ]
)

SEG_EVAL = pa.schema(
    [
        ("scan_id", _str),
        ("method", _str),
        ("lung_dice", pa.float64()),
        ("infection_dice", pa.float64()),
        ("ratio_pred", pa.float64()),
        ("ratio_true", pa.float64()),
        ("ratio_abs_error", pa.float64()),
        ("ratio_rel_error", pa.float64()),
    ]
)

SPLITS = pa.schema(
    [
        ("scan_id", _str),
        ("patient_id", _str),
        ("set", _str),  # tv | test
        ("fold", pa.int8()),  # null for test
        ("policy", _str),
        ("seed", pa.int64()),
        ("split_version", _str),
    ]
)

PREPROCESSED = pa.schema(
    [
        ("scan_id", _str),
        ("config_hash", _str),
        ("input_path", _str),
        ("input_hash", _str),
        ("lung_path", _str),
        ("lung_hash", _str),
        ("infection_path", _str),
        ("infection_hash", _str),
        ("geometry_path", _str),
        ("shape_z", pa.int32()),
        ("shape_y", pa.int32()),
        ("shape_x", pa.int32()),
        ("scale_factor", pa.float64()),
    ]
)

TRAINING_RUNS = pa.schema(
    [
        ("fold", pa.int8()),
        ("branch", _str),  # att_us | att_ss | rn34_us
        ("model_key", _str),  # the training key: checkpoints under models/classifier__<key>
        ("sampler_weights", _str),  # JSON: sampling group -> W ({} for uniform sampling)
        ("epoch_selection", _str),  # inner | last (TrainConfig.epoch_selection)
        ("best_epoch", pa.int32()),  # the kept epoch
        # Its AUC on the inner validation split of the training folds (NaN for "last");
        # never on the fold's own validation scans.
        ("select_auc", pa.float64()),
        ("epochs", pa.int32()),
        ("seconds", pa.float64()),
        ("device", _str),
        ("n_train", pa.int32()),  # the fold's training scans ...
        ("n_fit", pa.int32()),  # ... of which the network was fitted on these
        ("n_select", pa.int32()),  # ... and the epoch chosen on these
        # The logit's calibration on the training scans (0 and 1: uncalibrated).
        ("logit_shift", pa.float64()),
        ("logit_scale", pa.float64()),
        ("checkpoint_path", _str),
        ("checkpoint_hash", _str),
    ]
)

TRAINING_HISTORY = pa.schema(
    [
        ("fold", pa.int8()),
        ("branch", _str),
        ("model_key", _str),
        ("epoch", pa.int32()),
        ("loss", pa.float64()),
        ("loss_c", pa.float64()),
        ("loss_ex", pa.float64()),
        ("select_auc", pa.float64()),  # inner validation split (NaN for "last")
        ("select_loss", pa.float64()),
        ("lr", pa.float64()),
        ("seconds", pa.float64()),
    ]
)

PREDICTIONS = pa.schema(
    [
        ("scan_id", _str),
        ("fold", pa.int8()),
        # rn34_us | att_us | att_ss | att_ds | att_ds_nested (val only); the baselines'
        # rows (base_*) are the part predictions/baselines.parquet
        ("branch", _str),
        ("set", _str),  # val (out-of-fold) | test
        ("probability", pa.float64()),  # P(COVID)
        ("model_key", _str),
    ]
)

ENSEMBLE_SURFACE = pa.schema(
    [
        ("w_extreme", pa.float64()),
        ("w_middle", pa.float64()),
        ("objective", pa.float64()),  # on the TV out-of-fold predictions
    ]
)

METRICS = pa.schema(
    [
        # rn34_us | att_us | att_ss | att_ds | att_ds_nested | shipped | base_intensity
        # | base_ratio | base_hand (dsan_core.evaluation.tables)
        ("model", _str),
        ("set", _str),  # tv (out-of-fold, pooled) | test
        ("aggregate", _str),  # pooled | fold | mean | std | averaged (fold-averaged model)
        ("fold", pa.int64()),  # null unless aggregate is fold
        ("bin", _str),  # all | <0.005 | 0.005-0.030 | >0.030
        ("metric", _str),  # auc | accuracy | sensitivity | specificity | f1 | ece
        ("value", pa.float64()),
        ("ci_low", pa.float64()),  # patient-level bootstrap interval
        ("ci_high", pa.float64()),
        ("n_covid", pa.int64()),  # scans behind the value
        ("n_cap", pa.int64()),
        ("n_patients", pa.int64()),
    ]
)

COMPARISONS = pa.schema(
    [
        ("model_a", _str),
        ("model_b", _str),
        ("set", _str),  # tv | test (delong on test: the fold-averaged models, fold null)
        ("fold", pa.int64()),
        ("bin", _str),
        ("metric", _str),
        ("test", _str),  # paired_t | delong
        ("family", _str),  # <test>:<set>:all | <test>:<set>:bins (Holm within each)
        ("estimate", pa.float64()),  # a - b
        ("statistic", pa.float64()),  # NaN where undefined (zero variance)
        ("p_value", pa.float64()),
        ("p_holm", pa.float64()),  # Holm-Bonferroni adjusted within the family
        ("n", pa.int64()),
    ]
)

THRESHOLDS = pa.schema(
    [
        ("model", _str),
        ("fold", pa.int64()),  # null: chosen on all TV (test rows); k: on the other folds
        ("threshold", pa.float64()),  # P(COVID) >= threshold is COVID
        ("rule", _str),  # youden | fixed | fixed (J undefined)
        ("n_scans", pa.int64()),  # TV out-of-fold scans it was chosen on (0: fixed)
    ]
)

BASELINE_FEATURES = pa.schema(
    [
        ("scan_id", _str),
        ("feature", _str),  # mean_intensity | hist_<i> (dsan_core.evaluation.baselines)
        ("value", pa.float64()),
    ]
)

RELIABILITY = pa.schema(
    [
        ("model", _str),
        ("set", _str),
        ("aggregate", _str),
        ("fold", pa.int64()),
        ("prob_bin", pa.int64()),
        ("bin_low", pa.float64()),
        ("bin_high", pa.float64()),
        ("n_scans", pa.int64()),
        ("mean_predicted", pa.float64()),
        ("fraction_covid", pa.float64()),
    ]
)

FAITHFULNESS = pa.schema(
    [
        ("scan_id", _str),  # a COVID test scan
        ("model", _str),  # att_us, att_ss (attention) | rn34_us (Grad-CAM)
        ("fold", pa.int64()),
        # Inside the lung only: the share of the map's lung mass inside the infection.
        ("mass_inside", pa.float64()),
        ("pointing_hit", pa.float64()),  # the map's maximum in the lung inside the infection
        ("chance", pa.float64()),  # the infection's share of the lung (a uniform map's mass)
        ("lift", pa.float64()),  # mass_inside / chance
        ("deletion_drop", pa.float64()),  # P - P(map's top lung voxels deleted)
        ("random_drop", pa.float64()),  # P - P(as many random lung voxels deleted)
    ]
)

PREDICTIONS_NEW = pa.schema(
    [
        ("scan_id", _str),  # the chosen series' pseudonym (as ingestion would name it)
        ("study_id", _str),
        ("status", _str),  # predicted | refused
        ("reason", _str),  # why a study was refused ("" when predicted)
        ("probability", pa.float64()),  # P(COVID), dual-sampling ensemble
        ("decision", _str),  # COVID (probability >= threshold) | CAP
        ("infection_ratio", pa.float64()),
        ("ensemble_band", _str),
        ("p_att_us", pa.float64()),  # mean over the att_us fold models
        ("p_att_ss", pa.float64()),
        ("model_id", _str),  # the trained ensemble the prediction came from
        # Where the lung and infection masks came from: vbnet__<version>,
        # classical__<settings>, or masks (given with the request).
        ("segmenter", _str),
        # True when that segmenter is weaker than the masks the model was trained on
        # (a VB-Net or the classical one standing in for ground truth): the infection
        # ratio, and so the ensemble band, is less certain.
        ("weaker_segmenter", pa.bool_()),
        ("attention_file", _str),  # relative to the output folder
        ("overlay_file", _str),
        ("predicted_at", pa.timestamp("us", tz="UTC")),
    ]
)

MODELS = pa.schema(
    [
        ("model_id", _str),  # 16 hex: checkpoints, DS weights, segmenter and configs
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("status", _str),  # promoted | candidate | rejected | retired
        ("split_version", _str),
        ("n_tv", pa.int32()),
        ("n_test", pa.int32()),
        ("test_auc", pa.float64()),  # DS ensemble (mean over folds) on its own test scans
        ("w_extreme", pa.float64()),
        ("w_middle", pa.float64()),
        ("segmenter", _str),
        ("code_version", _str),
        ("record_path", _str),  # the model's record: models/ensembles/<model_id>.json
    ]
)

MODEL_DECISIONS = pa.schema(
    [
        ("at", pa.timestamp("us", tz="UTC")),
        ("model_id", _str),
        ("action", _str),  # promote | reject | rollback
        ("actor", _str),  # gate | first model | user
        ("champion_id", _str),  # the promoted model it was compared with / replaced
        ("reason", _str),
        ("numbers", _str),  # JSON: metric -> champion, challenger, difference, CI, p
        ("n_scans", pa.int32()),
    ]
)

MASK_PROPOSALS = pa.schema(
    [
        ("export_id", _str),  # one `dsan masks export`
        ("scan_id", _str),
        ("proposed_at", pa.timestamp("us", tz="UTC")),
        ("strategy", _str),  # uncertainty | random (the one used)
        ("rank", pa.int32()),  # 1 = review first
        ("score", pa.float64()),  # mean predictive entropy in the lung (NaN: not scored)
        ("segmenter", _str),  # vbnet__<version> | classical__<settings>
        ("infection_ratio", pa.float64()),  # of the proposal
        ("lung_path", _str),  # the proposal, kept in the data root
        ("lung_hash", _str),
        ("infection_path", _str),
        ("infection_hash", _str),
    ]
)

MASK_REVIEWS = pa.schema(
    [
        ("review_id", _str),  # one scan's import (a later one of the scan replaces it)
        ("scan_id", _str),
        ("reviewer", _str),
        ("reviewed_at", pa.timestamp("us", tz="UTC")),
        ("export_id", _str),  # the export whose proposal was corrected ("" when none)
        ("source", _str),  # seg.nrrd | nifti: the file the correction came from
        ("proposal_segmenter", _str),
        # Proposal vs correction (NaN without a proposal).
        ("lung_dice", pa.float64()),
        ("infection_dice", pa.float64()),
        ("voxels_changed", pa.int64()),
        ("lung_path", _str),  # the reviewed masks: ground truth from now on
        ("lung_hash", _str),
        ("infection_path", _str),
        ("infection_hash", _str),
    ]
)

LINEAGE = pa.schema(
    [
        ("run_id", _str),
        ("stage", _str),
        ("key", _str),
        ("cache_hit", pa.bool_()),
        ("input_hashes", _str),  # JSON object name -> hash
        ("output_hashes", _str),  # JSON object name -> hash
        ("config_hash", _str),
        ("code_version", _str),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("ended_at", pa.timestamp("us", tz="UTC")),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "scans": SCANS,
    "series": SERIES,
    "quarantine": QUARANTINE,
    "ground_truth": GROUND_TRUTH,
    "infection": INFECTION,
    "groups": GROUPS,
    "seg_eval": SEG_EVAL,
    "splits": SPLITS,
    "preprocessed": PREPROCESSED,
    "training_runs": TRAINING_RUNS,
    "training_history": TRAINING_HISTORY,
    "predictions": PREDICTIONS,
    "ensemble_surface": ENSEMBLE_SURFACE,
    "metrics": METRICS,
    "comparisons": COMPARISONS,
    "thresholds": THRESHOLDS,
    "baseline_features": BASELINE_FEATURES,
    "reliability": RELIABILITY,
    "faithfulness": FAITHFULNESS,
    "predictions_new": PREDICTIONS_NEW,
    "models": MODELS,
    "model_decisions": MODEL_DECISIONS,
    "mask_proposals": MASK_PROPOSALS,
    "mask_reviews": MASK_REVIEWS,
    "lineage": LINEAGE,
}
