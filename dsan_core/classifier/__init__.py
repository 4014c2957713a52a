"""The COVID-19 vs CAP classifier: DSANet (3D ResNet34 + online attention), its losses,
samplers, training loop, inference and maps (METHOD.md "Network", "Two sampling
strategies", "Training").

Conventions everywhere: volumes (z, y, x), images float in [0, 1] (lung-masked),
masks uint8 0/1; network tensors (batch, channels, z, y, x); label 1 COVID, 0 CAP.
Modules: `network` (DSANet), `attention` (T(A), L_ex), `gradcam`, `samplers` (US,
SS), `data` (lazy cases, Dataset, DataLoader), `augment`, `training` (loss, step, a
branch's epochs in `dsan_core.training_loop`), `calibration` (precise BN, logits),
`checkpoints`, `inference` (probabilities, maps), `faithfulness` (map metrics).
"""

from __future__ import annotations

from dsan_core.branches import ATT_SS, ATT_US, RN34_US
from dsan_core.classifier.attention import attention_loss, normalise_per_sample, soft_attention
from dsan_core.classifier.checkpoints import (
    CHECKPOINT_FORMAT,
    build_classifier,
    load_classifier,
)
from dsan_core.classifier.data import (
    ClassifierCase,
    ClassifierDataset,
    cases_from_tables,
    make_loader,
)
from dsan_core.classifier.faithfulness import deletion_drop
from dsan_core.classifier.gradcam import grad_cam
from dsan_core.classifier.inference import (
    attention_map,
    predict_logits,
    predict_probabilities,
)
from dsan_core.classifier.network import DSANet, DSANetOutput, feature_shape
from dsan_core.classifier.samplers import (
    SizeBalancedSampler,
    UniformSampler,
    size_balanced_weights,
)
from dsan_core.classifier.training import (
    ClassifierEpochReport,
    ClassifierTrainResult,
    branch_seed,
    classifier_loss,
    epoch_learning_rate,
    train_classifier,
    train_step,
    uses_attention,
)

__all__ = [
    "ATT_SS",
    "ATT_US",
    "CHECKPOINT_FORMAT",
    "RN34_US",
    "ClassifierCase",
    "ClassifierDataset",
    "ClassifierEpochReport",
    "ClassifierTrainResult",
    "DSANet",
    "DSANetOutput",
    "SizeBalancedSampler",
    "UniformSampler",
    "attention_loss",
    "attention_map",
    "branch_seed",
    "build_classifier",
    "cases_from_tables",
    "classifier_loss",
    "deletion_drop",
    "epoch_learning_rate",
    "feature_shape",
    "grad_cam",
    "load_classifier",
    "make_loader",
    "normalise_per_sample",
    "predict_logits",
    "predict_probabilities",
    "size_balanced_weights",
    "soft_attention",
    "train_classifier",
    "train_step",
    "uses_attention",
]
