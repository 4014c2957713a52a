"""`dsan predict` for one study, pure: a decoded CT and its lung / infection masks in,
the dual-sampling ensemble's P(COVID) and an attention map on the CT's grid out.

The trained ensemble is the fold models of both attention branches and the searched
weights (METHOD.md "Ensemble"): P_US and P_SS are each the mean over the fold models,
and P = w_band * P_US + (1 - w_band) * P_SS, the band from the study's infection ratio.
Because the combination is linear, P equals the mean over folds of the per-fold DS
predictions the evaluation stage reports for a test scan. The map is the mean of every
fold model's attention map (A, min-max normalised), mapped back onto the CT's grid.

Arrays are (z, y, x); masks uint8 0/1 on the CT's grid; HU images as SimpleITK images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from dsan_core.classifier import ClassifierCase, DSANet, attention_map, predict_probabilities
from dsan_core.config import DECISION_THRESHOLD, GroupsConfig, PreprocessConfig
from dsan_core.ensemble import EnsembleWeights
from dsan_core.errors import ModelError
from dsan_core.groups import BAND_EXTREME, LABEL_CAP, LABEL_COVID, ensemble_bands
from dsan_core.preprocessing import preprocess_arrays
from dsan_core.preprocessing.geometry import map_to_original
from dsan_core.segmentation.ratio import infection_ratio


@dataclass(frozen=True)
class TrainedEnsemble:
    """The fold models of the two attention branches (eval mode) and the DS weights."""

    us: Sequence[DSANet]
    ss: Sequence[DSANet]
    weights: EnsembleWeights
    threshold: float = DECISION_THRESHOLD
    mixed_precision: bool = True


@dataclass(frozen=True)
class StudyPrediction:
    probability: float  # P(COVID) of the DS ensemble
    decision: str  # COVID when probability >= the threshold, else CAP
    p_us: float  # mean over the att_us fold models
    p_ss: float
    infection_ratio: float
    band: str
    attention: np.ndarray  # float32 (z, y, x) in [0, 1] on the CT's grid
    input: np.ndarray  # the network input (z, y, x), for figures


def predict_study(image: sitk.Image, lung: np.ndarray, infection: np.ndarray, *,
                  ensemble: TrainedEnsemble, preprocess: PreprocessConfig,
                  groups: GroupsConfig, device: torch.device, scan_id: str) -> StudyPrediction:
    """The ensemble's prediction for one study (see the module docstring)."""
    if not ensemble.us or not ensemble.ss:
        raise ModelError("the trained ensemble needs att_us and att_ss fold models, found "
                         f"{len(ensemble.us)} and {len(ensemble.ss)}")
    spacing = tuple(float(v) for v in image.GetSpacing())
    ratio = infection_ratio(lung, infection, spacing, scan_id=scan_id).infection_ratio
    band = str(ensemble_bands(np.array([ratio]), groups)[0])
    ready = preprocess_arrays(sitk.GetArrayViewFromImage(image), lung, infection, spacing,
                              image.GetOrigin(), image.GetDirection(), preprocess,
                              scan_id=scan_id)
    case = ClassifierCase(scan_id, 1, "covid_small", lambda: ready.input,
                          lambda: ready.infection)
    p_us, p_ss = (float(np.mean([_probability(m, case, device, ensemble.mixed_precision)
                                 for m in models])) for models in (ensemble.us, ensemble.ss))
    w = ensemble.weights.w_extreme if band == BAND_EXTREME else ensemble.weights.w_middle
    probability = w * p_us + (1.0 - w) * p_ss
    maps = [attention_map(m, case, device=device, kind="attention",
                          mixed_precision=ensemble.mixed_precision)
            for m in (*ensemble.us, *ensemble.ss)]
    on_ct = map_to_original(np.mean(maps, axis=0), ready.geometry, interpolation="linear")
    return StudyPrediction(probability, LABEL_COVID if probability >= ensemble.threshold
                           else LABEL_CAP, p_us, p_ss, ratio, band,
                           np.clip(on_ct, 0.0, 1.0).astype(np.float32), ready.input)


def _probability(model: DSANet, case: ClassifierCase, device: torch.device,
                 mixed_precision: bool) -> float:
    return float(predict_probabilities(model, [case], device=device, batch_size=1,
                                       mixed_precision=mixed_precision)[0])
