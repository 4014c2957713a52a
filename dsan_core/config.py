"""Typed configuration: one frozen pydantic model per stage, grouped in `PipelineConfig`.

Profiles (`profiles/<name>.yaml`) hold only the values that differ from the defaults
below; the defaults are the paper's constants (../shared/METHOD.md). Unknown keys and
bad values fail at load time with a message that names the field.

Nothing here reads the environment: `load_profile` takes the profile path and an
optional mapping of overrides; the CLI decides where those come from.

Every constant of METHOD.md has exactly one definition, below or in this module's
constants; everything else imports it (tests/dsan_core/test_method_constants.py checks
that its literal appears nowhere else in the source):

    METHOD.md constant                    value             defined as -> config field
    ratio cut: COVID small/large, top     0.030             RATIO_LARGE -> groups.covid_small_below,
      analysis-bin edge, band "extreme"                       groups.bin_edges[1], groups.band_high
    ratio cut: CAP small/large, band      0.001             RATIO_TINY -> groups.cap_small_at_most,
      "extreme" below                                         groups.band_low
    lowest analysis-bin edge              0.005             RATIO_SMALL -> groups.bin_edges[0]
    bin / group / band names              '<0.005', ...     dsan_core.groups (ANALYSIS_BINS, ...)
    resampling spacing (x, y, z) mm       0.7168, 1.25      preprocess.spacing_mm
    one scale factor                      0.5               preprocess.scale
    network input (z, y, x)               138 x 256 x 256   preprocess.target_shape
    CT window width / level (HU)          1500 / -600       CT_WINDOW_WIDTH, CT_WINDOW_LEVEL ->
                                                              preprocess.window_width, window_level
    ResNet34 blocks, first width          [3, 4, 6, 3], 64  train.layers, train.width
    feature maps 1/16 of the input        16                train.feature_stride
    attention T(A): alpha, beta           100, 0.4          ATTENTION_ALPHA, ATTENTION_BETA ->
                                                              train.attention_alpha, attention_beta
    attention loss weight lambda          0.5               train.attention_lambda
    Adam beta1, weight decay              0.9, 1e-4         train.adam_beta1, train.weight_decay
    learning rate, / 10 every 5 epochs    2e-4, 0.1, 5      train.learning_rate, lr_gamma,
                                                              lr_step_epochs
    batch size, epochs                    20, 20            train.batch_size, train.epochs
    DS weights w (extreme, middle)        0.35, 0.96        PAPER_W_EXTREME, PAPER_W_MIDDLE ->
                                                              ensemble.w_extreme, w_middle
                                                              (and evaluation.paper.PAPER)
    P(COVID) threshold of the metrics     0.5               DECISION_THRESHOLD ->
                                                              evaluation.threshold,
                                                              ensemble.threshold, gate.threshold
    cross-validation folds                5                 split.n_folds
    thin slices                           < 2 mm            ingest.max_slice_thickness_mm
    the pseudonym key's variable          DSAN_PSEUDONYM_KEY  KEY_ENV (not METHOD.md)
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from dsan_core.errors import ConfigError

# --- METHOD.md's constants, each defined here once (see the table above) -----------------
#: Infection ratios the paper's group rules cut at ("Two kinds of groups").
RATIO_LARGE = 0.030  # COVID small / large; analysis bin edge; ensemble band "extreme" above
RATIO_TINY = 0.001  # CAP small / large; ensemble band "extreme" below
RATIO_SMALL = 0.005  # lowest analysis bin edge
#: The CT window (width, level) in HU: clip to level +- width / 2, scale to [0, 1].
CT_WINDOW_WIDTH = 1500.0
CT_WINDOW_LEVEL = -600.0
#: T(A) = 1 / (1 + exp(-alpha * (A - beta))) of the online attention.
ATTENTION_ALPHA = 100.0
ATTENTION_BETA = 0.4
#: The paper's DS ensemble weights w (extreme band, middle band).
PAPER_W_EXTREME = 0.35
PAPER_W_MIDDLE = 0.96
#: P(COVID) >= this is called COVID (the paper's metrics at threshold 0.5).
DECISION_THRESHOLD = 0.5
#: The environment variable holding the pseudonym key (not METHOD.md; defined once too).
KEY_ENV = "DSAN_PSEUDONYM_KEY"

#: The published key of the test and demo profiles. Anyone can recompute the
#: pseudonyms made with it, so it is only for synthetic data.
PUBLISHED_DEMO_KEY = "dsan-demo-key-PUBLIC-do-not-use-for-real-data"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Options added after data roots were made with this section, off when None: left out
    #: of the fingerprint while off, so that those roots stay cached.
    LATER_OPTIONS: ClassVar[frozenset[str]] = frozenset()

    def fingerprint(self) -> str:
        """A stable hash of this section's values, for cache keys and lineage."""
        payload = self.model_dump(mode="json")
        for name in self.LATER_OPTIONS:
            if payload[name] is None:
                del payload[name]
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class SynthConfig(_Section):
    """The synthetic chest-CT cohort: a stand-in for a hospital export.

    With `later_cutoff` set the cohort has two sets shaped like the paper's TV and test
    sets (METHOD.md "Data and labels"): patients scanned before the cutoff (class mix
    `covid_fraction`, sites `sites`) and `later_fraction` of the patients scanned on or
    after it, mostly COVID (`later_covid_fraction`; the paper's test set is 82 %),
    whose CAP scans all come from `later_cap_site`, a site with no scan before the
    cutoff and pixels unlike any earlier site's. The `date` split policy at the same
    cutoff then reproduces the paper's TV/test design. Without it, scans are dated
    over first_date..last_date. Earlier patients are dealt to `sites` so that every
    site holds both classes in the same proportion.
    """

    seed: int = 20200505
    #: Labelled patients, both sets together (broken inputs come on top).
    n_patients: int = Field(default=60, ge=2)
    #: Fraction of patients that have 2-3 scans on different dates.
    repeat_fraction: float = Field(default=0.25, ge=0.0, le=1.0)
    #: In-plane matrix (rows = columns) of the thin-slice series.
    matrix: int = Field(default=128, ge=32)
    #: Number of slices of the thin-slice series.
    n_slices: int = Field(default=96, ge=16)
    #: Thin-series slice thickness (= spacing) in mm; the paper's range is 0.625-1.5.
    slice_thickness_mm: float = Field(default=1.25, gt=0)
    #: When not empty, each study draws its thin-slice thickness (mm) from these instead
    #: and keeps the z coverage n_slices x slice_thickness_mm (thinner: more slices).
    slice_thickness_choices_mm: tuple[float, ...] = ()
    #: Reconstruction field of view in mm (pixel spacing = fov / matrix).
    fov_mm: float = Field(default=360.0, gt=0)
    #: COVID share of the patients (of the earlier set when there is a later one).
    covid_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Share of each set's patients of each class whose infection ratios follow shares
    #: common to both classes (the rest follow their class's, the paper's): there, the
    #: ratio says nothing about the class (dsan_core.synthetic.ratios.BALANCED_SHARES).
    balanced_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    sites: tuple[str, ...] = ("site-a", "site-b", "site-c")
    include_localizer: bool = True
    include_thick_series: bool = True
    #: Add deliberately broken inputs (truncated, non-DICOM, missing slice, non-CT).
    include_broken: bool = True
    first_date: date = date(2020, 1, 20)
    last_date: date = date(2020, 4, 30)
    #: Scans on or after this date form the later, test-like set (None: no such set).
    later_cutoff: date | None = None
    later_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    later_covid_fraction: float = Field(default=0.82, ge=0.0, le=1.0)
    later_cap_site: str = "site-later"

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        if self.first_date > self.last_date:
            raise ValueError(f"first_date {self.first_date} is after last_date {self.last_date}")
        if any(t <= 0 for t in self.slice_thickness_choices_mm):
            raise ValueError("slice_thickness_choices_mm must be positive, found "
                             f"{self.slice_thickness_choices_mm}")
        if self.later_cutoff is not None:
            if not self.first_date < self.later_cutoff <= self.last_date:
                raise ValueError(f"later_cutoff {self.later_cutoff} must lie after first_date "
                                 f"{self.first_date} and no later than last_date {self.last_date}")
            if self.later_cap_site in self.sites:
                raise ValueError(f"later_cap_site {self.later_cap_site!r} must be a site with no "
                                 f"scan before the cutoff, found it in sites {list(self.sites)}")
        return self


class IngestConfig(_Section):
    """DICOM discovery, series choice, geometry checks and pseudonymisation."""

    #: A series is "thin" when its slice thickness is strictly below this (mm).
    max_slice_thickness_mm: float = Field(default=2.0, gt=0)
    min_slices: int = Field(default=16, ge=2)
    #: Allowed relative spread of slice spacing before a series is rejected.
    spacing_tolerance: float = Field(default=0.05, ge=0)
    #: Max angle (degrees) between the slice normal and the z axis for "axial".
    axial_tolerance_deg: float = Field(default=10.0, ge=0)
    #: Gantry tilt above this (degrees) is flagged; it is never "fixed" silently.
    max_gantry_tilt_deg: float = Field(default=0.5, ge=0)
    reject_gantry_tilt: bool = True
    #: Secret key for HMAC pseudonyms. None means "take it from DSAN_PSEUDONYM_KEY".
    pseudonym_key: SecretStr | None = None
    #: Only the test and demo profiles may set this: it allows PUBLISHED_DEMO_KEY.
    allow_published_key: bool = False
    #: Files per Dask task when indexing headers.
    index_chunk_size: int = Field(default=64, ge=1)


class VBNetConfig(_Section):
    """A V-Net with bottleneck convolution units (VB-Net)."""

    base_width: int = Field(default=16, ge=4)
    depth: int = Field(default=4, ge=2, le=6)
    #: Bottleneck blocks per resolution level (encoder and decoder).
    blocks_per_level: int = Field(default=1, ge=1)
    #: Spacing (x, y, z) mm the network works at; inputs are resampled to it.
    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 2.5)
    patch_size: tuple[int, int, int] = (64, 96, 96)
    batch_size: int = Field(default=2, ge=1)
    epochs: int = Field(default=40, ge=1)
    steps_per_epoch: int = Field(default=50, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    #: Adam's L2 penalty (coupled, as in torch.optim.Adam).
    weight_decay: float = Field(default=1e-5, ge=0)
    #: Fraction of patches centred on an infection voxel (class-aware sampling).
    infection_patch_fraction: float = Field(default=0.5, ge=0, le=1)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    #: Cap on validation scans (validation runs sliding windows every epoch); the
    #: rest of the validation fraction trains.
    max_val_cases: int | None = Field(default=None, ge=1)
    #: Sliding-window overlap fraction at inference.
    overlap: float = Field(default=0.25, ge=0, lt=1)
    #: Infection is called where its probability exceeds this threshold (inside the
    #: lung); 0.5 is the majority rule. "calibrate": the threshold that maximised the
    #: best epoch's validation infection Dice (helps an under-trained model, which
    #: under-segments faint lesion borders). Inference only: changing it never retrains.
    infection_threshold: float | Literal["calibrate"] = 0.5
    mixed_precision: bool = True
    seed: int = 7
    #: Prepared (resampled) scans kept in memory during training, least recently used
    #: dropped beyond it. Runtime only.
    cache_capacity: int = Field(default=256, ge=1)

    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("cache_capacity",)

    @field_validator("infection_threshold")
    @classmethod
    def _threshold_in_range(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError(f"expected a probability in (0, 1) or 'calibrate', found {value}")
        return value

    def training_fingerprint(self) -> str:
        """Fingerprint of the fields that change a trained model (not inference-only or
        runtime-only ones)."""
        untrained = {name: type(self).model_fields[name].default for name in self.RUNTIME_FIELDS}
        return self.model_copy(update={**untrained, "infection_threshold": "calibrate"}
                               ).fingerprint()


class ClassicalSegConfig(_Section):
    """HU thresholds for the classical lung / infection segmenter."""

    lung_hu_max: float = -400.0
    infection_hu_min: float = -750.0
    infection_hu_max: float = 100.0
    min_lung_ml: float = Field(default=50.0, ge=0)


class SegmentationConfig(_Section):
    #: vbnet (trained here), classical (thresholds), external (masks made elsewhere, in
    #: external_mask_dir), or ground_truth: the masks imported at ingestion (--masks),
    #: for synthetic cohorts and fast tests; a scan without them fails alone.
    method: Literal["vbnet", "classical", "external", "ground_truth"] = "vbnet"
    #: For method "external": folder of `<scan_id>_lung.nii.gz` / `<scan_id>_infection.nii.gz`.
    external_mask_dir: Path | None = None
    vbnet: VBNetConfig = VBNetConfig()
    classical: ClassicalSegConfig = ClassicalSegConfig()
    #: Max scans that get an overlay PNG (None = all).
    max_overlays: int | None = None
    #: Fraction of scans with ground truth held out of VB-Net training, for evaluation.
    holdout_fraction: float = Field(default=0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _external_needs_dir(self) -> SegmentationConfig:
        if self.method == "external" and self.external_mask_dir is None:
            raise ValueError("method 'external' needs external_mask_dir")
        return self


class GroupsConfig(_Section):
    """Thresholds on the infection ratio (METHOD.md "Two kinds of groups")."""

    #: covid_small: ratio < covid_small_below; covid_large otherwise.
    covid_small_below: float = RATIO_LARGE
    #: cap_small: ratio <= cap_small_at_most; cap_large otherwise.
    cap_small_at_most: float = RATIO_TINY
    #: Analysis bins: < bin_edges[0], bin_edges[0]..bin_edges[1], > bin_edges[1].
    bin_edges: tuple[float, float] = (RATIO_SMALL, RATIO_LARGE)
    #: Ensemble band "extreme" when ratio < band_low or ratio > band_high.
    band_low: float = RATIO_TINY
    band_high: float = RATIO_LARGE


class SplitConfig(_Section):
    policy: Literal["date", "site", "column", "random"] = "date"
    #: policy "date": scans acquired on or after this date go to test.
    cutoff_date: date | None = None
    #: policy "site": these sites are held out as test.
    test_sites: tuple[str, ...] = ()
    #: policy "column": the labels-manifest column holding "tv" / "test".
    assignment_column: str = "split"
    #: policy "random": patient-level hold-out fraction.
    test_fraction: float = Field(default=0.3, gt=0, lt=1)
    n_folds: int = Field(default=5, ge=2)
    seed: int = 2020
    #: Warn when a training fold has fewer scans than this in a sampling group.
    min_group_scans: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _policy_needs_its_field(self) -> SplitConfig:
        if self.policy == "date" and self.cutoff_date is None:
            raise ValueError("policy 'date' needs cutoff_date")
        if self.policy == "site" and not self.test_sites:
            raise ValueError("policy 'site' needs test_sites")
        return self


class PreprocessConfig(_Section):
    """METHOD.md "Pre-processing"; sizes are (z, y, x), spacings (x, y, z) mm."""

    spacing_mm: tuple[float, float, float] = (0.7168, 0.7168, 1.25)
    #: One factor for all axes. A number (the paper: 0.5) or "fit": the largest
    #: factor <= 1 that makes the resampled volume fit target_shape.
    scale: float | Literal["fit"] = 0.5
    target_shape: tuple[int, int, int] = (138, 256, 256)
    #: What the final grid frames. "scan": the whole CT, centred (the paper). "lung": the
    #: lung mask's bounding box plus `lung_margin_mm` on every side, centred, and "fit"
    #: fits that box instead of the scan: the same voxels then spend none of the input on
    #: the body and air around the lungs (the network input is lung-masked anyway), so a
    #: small input sees the lesions finer. Not in the paper.
    crop: Literal["scan", "lung"] = "scan"
    lung_margin_mm: float = Field(default=8.0, ge=0.0)
    window_width: float = CT_WINDOW_WIDTH
    window_level: float = CT_WINDOW_LEVEL
    #: Not in the paper (None: off). Shift each scan's HU, before the window, so that the
    #: median inside its lung mask (on the final grid) is this value: a site's calibration
    #: offset then does not move the whole input. Measured in benchmarks/README.md, "Per-
    #: scan lung reference".
    lung_reference_hu: float | None = Field(default=None, ge=-1000.0, le=0.0)
    antialias: bool = True
    dtype: Literal["float16", "float32"] = "float16"

    LATER_OPTIONS: ClassVar[frozenset[str]] = frozenset({"lung_reference_hu"})

    @model_validator(mode="after")
    def _positive(self) -> PreprocessConfig:
        if isinstance(self.scale, float) and not 0 < self.scale <= 4:
            raise ValueError(f"scale must be in (0, 4] or 'fit', got {self.scale}")
        if min(self.target_shape) < 8:
            raise ValueError(f"target_shape must be at least 8 per axis, got {self.target_shape}")
        return self


class TrainConfig(_Section):
    """Classifier training (METHOD.md "Training"); used by the training stage.

    `training_fingerprint` leaves out the runtime-only fields (`RUNTIME_FIELDS`: data
    loading and memory layout), so changing them never retrains.
    """

    #: Channels of the first ResNet stage (the paper's 64); stages are w-2w-4w-8w.
    width: int = Field(default=64, ge=4)
    #: BasicBlocks per stage: ResNet34.
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    #: Input voxels per feature-map (and CAM) voxel along each axis: the paper's 16
    #: (its last stage keeps the resolution); 8 or 4 keep stage 3 (and 2) at stride 1
    #: too, for a CAM fine enough to follow lesions at a small input
    #: (`dsan_core.classifier.network`). Not in the paper below 16.
    feature_stride: Literal[4, 8, 16] = 16
    batch_size: int = Field(default=20, ge=1)
    epochs: int = Field(default=20, ge=1)
    learning_rate: float = Field(default=2e-4, gt=0)
    #: Step decay (torch's StepLR): lr * lr_gamma ** (epoch // lr_step_epochs).
    lr_step_epochs: int = Field(default=5, ge=1)
    lr_gamma: float = Field(default=0.1, gt=0, le=1)
    #: Adam's beta1; beta2 is torch's 0.999.
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    #: Adam's L2 penalty (coupled, as in torch.optim.Adam; not AdamW).
    weight_decay: float = Field(default=1e-4, ge=0)
    attention_lambda: float = Field(default=0.5, ge=0)
    attention_alpha: float = ATTENTION_ALPHA
    attention_beta: float = ATTENTION_BETA
    #: Draws per epoch of the size-balanced (SS) branch; None: the number of training
    #: scans, so an SS epoch has as many steps as a US one.
    balanced_samples_per_epoch: int | None = Field(default=None, ge=1)
    #: After every epoch, recompute BatchNorm's statistics over the training scans with
    #: the epoch's weights ("precise BN"): with a few scans per batch the running
    #: averages make eval-mode outputs unstable (dsan_core.classifier.training).
    precise_batch_norm: bool = False
    #: Mirror each training scan left-right with probability 1/2 (with its infection
    #: mask). Not in the paper; it halves the over-fitting of a small cohort.
    augment: bool = False
    #: With `augment`, also shift each training scan's lung voxels by one offset drawn
    #: uniformly from +-intensity_jitter (window units: 0.02 is 30 HU), so that a site's
    #: calibration offset is not a cue. Not in the paper.
    intensity_jitter: float = Field(default=0.0, ge=0.0, le=0.5)
    #: After training, shift and scale each model's logit so that 0 lies midway between
    #: the mean logits of its COVID and CAP training scans and 1 unit is their standard
    #: deviation (`dsan_core.classifier.training.calibrate_logits`): the fold models of a
    #: branch then share one scale, for pooled out-of-fold predictions and fold
    #: averages. Not in the paper; uses training scans only.
    calibrate_logits: bool = False
    #: Which epoch is kept as the fold's model, without ever looking at the fold's
    #: validation scans (their predictions are the out-of-fold set that is reported):
    #: "inner" trains on the training folds less an inner validation split of
    #: `inner_val_fraction` of their patients and keeps the epoch with the best AUC
    #: there; "last" trains on all of the training folds and keeps the last epoch (a
    #: fixed epoch count). The paper kept the best epoch on the validation fold itself,
    #: which reuses the out-of-fold predictions it then reports.
    epoch_selection: Literal["inner", "last"] = "inner"
    inner_val_fraction: float = Field(default=0.2, gt=0, lt=1)
    #: bf16 autocast on CUDA (no gradient scaling needed); ignored on CPU.
    mixed_precision: bool = True
    seed: int = 0
    #: DataLoader worker processes (0: load in the training process). Runtime only.
    num_workers: int = Field(default=0, ge=0)
    #: Scans per forward pass in validation and prediction. Runtime only (BatchNorm
    #: uses its running statistics there, so the batch does not change the result).
    val_batch_size: int = Field(default=4, ge=1)
    #: channels_last_3d memory layout for the network and its inputs. Runtime only;
    #: off until measured faster on the GPU in use (benchmarks/classifier.py).
    channels_last_3d: bool = False

    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = (
        "num_workers",
        "val_batch_size",
        "channels_last_3d",
    )

    def network_summary(self) -> str:
        """The trained networks in words: '3D ResNet34 (BasicBlocks [3, 4, 6, 3] per
        stage), width 64, feature stride 16, 20 epochs' for the defaults (the paper's).
        The depth counts the weighted layers: two convs per BasicBlock, the stem, the FC."""
        depth = 2 * sum(self.layers) + 2
        return (f"3D ResNet{depth} (BasicBlocks {list(self.layers)} per stage), width "
                f"{self.width}, feature stride {self.feature_stride}, {self.epochs} "
                f"epoch{'' if self.epochs == 1 else 's'}")

    def training_fingerprint(self) -> str:
        """Fingerprint of the fields that change a trained model (not runtime-only ones)."""
        defaults = {name: type(self).model_fields[name].default for name in self.RUNTIME_FIELDS}
        return self.model_copy(update=defaults).fingerprint()


class EnsembleConfig(_Section):
    """Dual-sampling ensemble P = w * P_US + (1 - w) * P_SS, w per ensemble band
    (METHOD.md "Ensemble"); see `dsan_core.ensemble`."""

    #: The weights used when `search` is off; the paper's values by default.
    w_extreme: float = Field(default=PAPER_W_EXTREME, ge=0, le=1)
    w_middle: float = Field(default=PAPER_W_MIDDLE, ge=0, le=1)
    #: Search (w_extreme, w_middle) on the TV out-of-fold predictions, as the paper did.
    search: bool = True
    #: Grid step of the search; 1 / search_step must be a whole number of steps.
    search_step: float = Field(default=0.01, gt=0, le=0.5)
    #: What the search maximises: pooled AUC, or accuracy / F1 at `threshold`.
    objective: Literal["auc", "accuracy", "f1"] = "auc"
    #: P(COVID) >= threshold is called COVID (objectives accuracy and f1 only).
    threshold: float = Field(default=DECISION_THRESHOLD, gt=0, lt=1)

    @field_validator("search_step")
    @classmethod
    def _step_divides_one(cls, value: float) -> float:
        steps = round(1.0 / value)
        if abs(steps * value - 1.0) > 1e-9:
            raise ValueError(f"expected a step that divides 1 (e.g. 0.01, 0.05), found {value}")
        return value


class EvaluationConfig(_Section):
    """Metrics, statistics, calibration and report figures (METHOD.md "Evaluation");
    see `dsan_core.evaluation.thresholds` for the threshold rules."""

    #: How the threshold of accuracy, sensitivity, specificity and F1 is chosen:
    #: 'youden' maximises Youden's J on TV out-of-fold predictions (nested for the TV
    #: metrics: fold k at the value chosen on the other folds; all of TV for test);
    #: 'fixed' uses `threshold` everywhere (the paper's 0.5).
    threshold_rule: Literal["youden", "fixed"] = "youden"
    #: P(COVID) >= threshold is called COVID under rule 'fixed' (the paper: 0.5); also
    #: what `dsan predict` calls COVID.
    threshold: float = Field(default=DECISION_THRESHOLD, gt=0, lt=1)
    #: Patient-level bootstrap replicates for the confidence intervals (0: no CIs).
    bootstrap_samples: int = Field(default=1000, ge=0)
    #: Confidence level of the percentile bootstrap intervals.
    ci_level: float = Field(default=0.95, gt=0, lt=1)
    seed: int = 2020
    #: Equal-width probability bins of the expected calibration error.
    ece_bins: int = Field(default=10, ge=1)
    #: COVID test scans per analysis bin shown in the Fig. 5-style attention panel.
    figures_per_bin: int = Field(default=2, ge=0)
    #: Equal-width bins over [0, 1] of the histogram of the network input inside the lung
    #: (a feature of the untrained hand-feature baseline).
    baseline_histogram_bins: int = Field(default=8, ge=1)
    #: The deletion test removes this fraction of the lung's voxels: the map's top ones,
    #: and as its control the same number drawn at random inside the lung (`seed`).
    deletion_fraction: float = Field(default=0.05, gt=0, le=1)

    def baselines_fingerprint(self) -> str:
        """The settings that change the untrained baselines' predictions."""
        text = json.dumps({"baseline_histogram_bins": self.baseline_histogram_bins},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class GateConfig(_Section):
    """Champion / challenger: a new ensemble is promoted only when it is not worse than
    the promoted one, on the promoted one's test scans, beyond `margin` in AUC,
    sensitivity or specificity (dsan_core.evaluation.champion)."""

    margin: float = Field(default=0.02, ge=0, le=1)
    threshold: float = Field(default=DECISION_THRESHOLD, gt=0, lt=1)
    bootstrap_samples: int = Field(default=1000, ge=1)
    ci_level: float = Field(default=0.95, gt=0, lt=1)
    seed: int = 2020


class RetrainConfig(_Section):
    """Scheduled retraining (deployment `dsan-retrain`): when, and where new studies
    arrive. Paths stay out of Prefect's database (see storage.inputs)."""

    #: Cron schedule of the retraining deployment (weekly, Sunday 03:00, by default).
    cron: str = "0 3 * * 0"
    #: The drop folder of new studies, their labels, and (optionally) masks.
    drop_dicom_root: Path | None = None
    drop_labels: Path | None = None
    drop_masks: Path | None = None

    def drop(self, dicom_root: str | Path | None = None, labels: str | Path | None = None,
             masks: str | Path | None = None) -> tuple[Path, Path, Path | None]:
        """The drop to retrain on, absolute: the paths given, else the profile's."""
        folder = dicom_root or self.drop_dicom_root
        drop_labels = labels or self.drop_labels
        if folder is None or drop_labels is None:
            raise ConfigError("no drop to retrain on: give its folder and labels (--dicom-root "
                              "and --labels, or the deployment's dicom_root and labels), or "
                              "set retrain.drop_dicom_root and retrain.drop_labels in the "
                              "profile")
        drop_masks = masks or self.drop_masks
        return (Path(folder).absolute(), Path(drop_labels).absolute(),
                Path(drop_masks).absolute() if drop_masks else None)


class DaskConfig(_Section):
    #: None: start a local cluster. Otherwise the address of an existing scheduler.
    address: str | None = None
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    processes: bool = True
    memory_limit: str = "4GiB"


class RuntimeConfig(_Section):
    #: "auto": CUDA when available, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = None
    #: Classifier trainings running at once (on a server, the `gpu` concurrency limit). None:
    #: one per visible GPU, 1 on CPU (one training with every core was faster there).
    train_concurrency: int | None = Field(default=None, ge=1)
    dask: DaskConfig = DaskConfig()
    #: A Dask scheduler whose workers train the classifier's (fold, branch) models
    #: instead of the machine running the flow: e.g. one `dask worker ADDRESS --nthreads
    #: 1 --resources GPU=1` per GPU (CUDA_VISIBLE_DEVICES set per worker), with the data
    #: root at the same path. Each training asks for `train_resources`; the scheduler
    #: runs as many at once as there are free, and reruns a lost worker's training
    #: elsewhere, where it resumes from its last epoch. `device` is then resolved on
    #: each worker. None: train in the flow's process (train_concurrency at a time).
    train_address: str | None = None
    train_resources: dict[str, float] = Field(default_factory=lambda: {"GPU": 1.0})


class PipelineConfig(_Section):
    profile: str = "custom"
    synth: SynthConfig = SynthConfig()
    ingest: IngestConfig = IngestConfig()
    segmentation: SegmentationConfig = SegmentationConfig()
    groups: GroupsConfig = GroupsConfig()
    split: SplitConfig = SplitConfig(cutoff_date=date(2020, 3, 20))
    preprocess: PreprocessConfig = PreprocessConfig()
    train: TrainConfig = TrainConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    gate: GateConfig = GateConfig()
    retrain: RetrainConfig = RetrainConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    def fingerprints(self) -> dict[str, str]:
        """Each stage section's fingerprint (training: only what changes a model), for
        reports that say which configuration their numbers come from."""
        return {"ingest": self.ingest.fingerprint(),
                "segmentation": self.segmentation.vbnet.training_fingerprint()
                + self.segmentation.fingerprint(),
                "groups": self.groups.fingerprint(), "split": self.split.fingerprint(),
                "preprocess": self.preprocess.fingerprint(),
                "train": self.train.training_fingerprint(),
                "ensemble": self.ensemble.fingerprint(),
                "evaluation": self.evaluation.fingerprint()}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        found = item.get("input")
        shown = "" if isinstance(found, dict) else f" (found {found!r})"
        lines.append(f"  - {field}: {item['msg']}{shown}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "<dict>") -> PipelineConfig:
    """Validate a nested mapping into a `PipelineConfig`; errors name the field."""
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(source, error)) from None


def load_profile(path: Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a profile YAML file, apply nested `overrides`, and validate."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"profile file not found: {path.name}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"profile {path.name} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"profile {path.name}: expected a mapping, found {type(raw).__name__}")
    raw.setdefault("profile", path.stem)
    return parse_config(_deep_merge(raw, overrides or {}), source=path.name)
