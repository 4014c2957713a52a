"""Which epoch becomes a fold's model, decided on the training folds alone.

A fold's validation scans are its out-of-fold predictions, the TV numbers the report
pools and the ensemble search reads. Choosing the epoch on them as well (the paper's
"keep the checkpoint with the best validation performance") reuses those predictions,
and the pooled TV AUC then rises by the selection's optimism (+0.02 to +0.05 per
branch on the demo). So the training loop never sees them; `TrainConfig.epoch_selection`
picks one of two honest rules:

    inner   hold out `inner_val_fraction` of the training folds' PATIENTS (all their
            scans), stratified by the sampling group of each patient's first scan,
            train on the rest and keep the epoch with the best AUC on the held-out
            ones ("nested" selection);
    last    train on all the training scans for the configured number of epochs and
            keep the last one (the epoch count is a setting, like any other).

The inner split is a pure function of the training scans, their patients and a seed,
so a resumed run and `dsan status` agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dsan_core.classifier.data import ClassifierCase
from dsan_core.config import TrainConfig
from dsan_core.errors import ModelError

#: Seed stream of the inner split (apart from initialisation and epochs).
_INNER_STREAM = 0x5E1E


@dataclass(frozen=True)
class SelectionSplit:
    """`fit`: the scans the network is trained on; `select`: the scans the epoch is
    chosen on (empty for the "last" rule)."""

    fit: tuple[ClassifierCase, ...]
    select: tuple[ClassifierCase, ...]


def _patient(case: ClassifierCase) -> str:
    # A case without a patient id is its own patient.
    return case.patient_id or case.scan_id


def inner_split(cases: Sequence[ClassifierCase], fraction: float, seed: int
                ) -> SelectionSplit:
    """Hold out `fraction` of the patients, per sampling group of their first scan.

    Each stratum gives round(fraction x its patients) to the held-out part, at least one
    when it has two or more patients, so the held-out part has both classes whenever
    the training part does and no group is emptied by it. Patients are ordered by id,
    then permuted with `seed`: the split depends on the scans, not on their order.
    """
    if not 0 < fraction < 1:
        raise ModelError(f"expected an inner validation fraction in (0, 1), found {fraction}")
    first: dict[str, ClassifierCase] = {}
    for case in sorted(cases, key=lambda c: c.scan_id):
        first.setdefault(_patient(case), case)
    strata: dict[str, list[str]] = {}
    for patient in sorted(first):
        strata.setdefault(first[patient].sampling_group, []).append(patient)
    rng = np.random.default_rng([int(seed), _INNER_STREAM])
    held: set[str] = set()
    for group in sorted(strata):
        patients = strata[group]
        n_held = int(round(fraction * len(patients)))
        if len(patients) >= 2:
            n_held = min(max(n_held, 1), len(patients) - 1)
        order = rng.permutation(len(patients))
        held.update(patients[i] for i in order[:n_held])
    fit = tuple(c for c in cases if _patient(c) not in held)
    select = tuple(c for c in cases if _patient(c) in held)
    return SelectionSplit(fit, select)


def selection_split(cases: Sequence[ClassifierCase], config: TrainConfig, seed: int
                    ) -> SelectionSplit:
    """The training folds' scans split by `config.epoch_selection` (module docstring)."""
    if config.epoch_selection == "last":
        return SelectionSplit(tuple(cases), ())
    split = inner_split(cases, config.inner_val_fraction, seed)
    labels = {case.label for case in split.select}
    if len(labels) < 2:
        raise ModelError(f"the inner validation split needs COVID and CAP patients, found "
                         f"{len(split.select)} scans of class(es) {sorted(labels)}: too few "
                         "training patients for epoch_selection 'inner' (use 'last')")
    return split


def selection_scores(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(AUC, mean BCE) of the selection scans' logits; AUC NaN with one class, both NaN
    when there are none."""
    from sklearn.metrics import roc_auc_score

    if logits.size == 0:
        return math.nan, math.nan
    bce = np.logaddexp(0.0, logits) - labels * logits
    auc = math.nan
    if np.unique(labels).size == 2:
        auc = float(roc_auc_score(labels, logits))
    return auc, float(bce.mean())


def selection_key(auc: float, loss: float) -> tuple[float, float]:
    """Epochs compare by this key, larger is better: AUC first, then lower loss; NaN
    ranks below every number."""
    return (auc if math.isfinite(auc) else -math.inf,
            -loss if math.isfinite(loss) else -math.inf)
