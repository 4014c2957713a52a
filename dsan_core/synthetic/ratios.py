"""The infection ratios of the synthetic cohort: a joint distribution over analysis bins
and sampling groups, shaped like the paper's data (../shared/METHOD.md) in one part of
the cohort and balanced between the classes in the other.

Each class is a mixture of ratio strata, log-uniform inside each. Both classes have
the same four ranges, so inside an analysis bin the ratio says nothing about the
class; only how often each bin occurs differs. The weights are the paper's scan
counts: its train-validation (TV) set for the "earlier" scans, its test set for the
"later" ones (the set after the cutoff date).

    stratum   class  ratio range        bin          group        TV    test
    c_low     COVID  8e-5   .. 8.6e-4   < 0.005      covid_small  118    284
    c_a1      COVID  1.2e-3 .. 4.9e-3   < 0.005      covid_small   33     79
    c_mid     COVID  5.1e-3 .. 0.026    0.005-0.030  covid_small  318    718
    c_high    COVID  0.036  .. 0.30     > 0.030      covid_large  625   1214
    p_low     CAP    8e-5   .. 8.6e-4   < 0.005      cap_small    655    341
    p_a1      CAP    1.2e-3 .. 4.9e-3   < 0.005      cap_large    183     95
    p_mid     CAP    5.1e-3 .. 0.026    0.005-0.030  cap_large    183     41
    p_high    CAP    0.036  .. 0.30     > 0.030      cap_large     71     24

The bin columns add up to METHOD.md's table (COVID 151/318/625, CAP 838/183/71 in TV;
2295 / 501 test scans). The paper gives the CAP split at 0.001 only through its
weights: W_cap_large = N_cap_small / N_cap_large ~ 1.5 means cap_small is 1.5 / 2.5 =
60 % of CAP, 0.60 x 1092 = 655 scans, i.e. 655 / 838 = 78 % of the CAP scans below
0.005 are at or below 0.001. COVID's scans below 0.005 are split the same way (118 /
151, and 341 / 436 of both test columns), so a ratio below 0.005 is no hint of the
class. Expected weights of the paper part of the TV set:

    W_covid_small = N_covid_large / N_covid_small = 625 / (118 + 33 + 318) = 1.33
    W_cap_large   = N_cap_small / N_cap_large     = 655 / (183 + 183 + 71) = 1.50

Two parts ("shares"): the paper's class-specific shares above ("paper"), where the
ratio alone separates the classes (AUC ~0.85: COVID is mostly large, CAP mostly
small), and `SynthConfig.balanced_fraction` of each set and class ("balanced"), where
both classes draw their ratios from the same shares of the four ranges
(`BALANCED_SHARES`: 47 / 3 / 2 / 48 %, mostly tiny or extensive). The balanced part
pulls the ratio's AUC towards 0.5 (0.65 expected over the whole TV set at
balanced_fraction 0.5, against 0.85 for the paper part alone) and both size-balanced
weights towards one (1.11 and 1.15 expected; `expected_weights`), keeping them above it.

No ratio is drawn within a factor 1.15 below or 1.2 above a sampling threshold t
(0.030 COVID, 0.001 CAP) for either class: a segmenter that misses up to ~15 % of an
infection (the demo's CPU-trained VB-Net; it under-segments faint borders) then keeps
each scan in its ground-truth sampling group. Ranges also stop 2 % short of the bin
edges, so a phantom's voxel-exact ratio (one voxel is ~1 % of 0.005 at the test size)
stays in its stratum's bin.

Counts are quotas, not draws: a part's scans of one class are dealt to the strata by
largest remainder (`stratum_quotas`), so every size, however small, has the shares
above to within one scan, and every stratum with a quota of one or more is present.
A patient's scans share a stratum (follow-ups vary around the first ratio within it),
and the first ratios of a stratum's patients are spread over its range like a Latin
hypercube (`spread_quantiles`), so a small cohort's histogram has the right shape too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dsan_core.config import RATIO_LARGE, RATIO_SMALL, RATIO_TINY
from dsan_core.groups import ANALYSIS_BINS

Diagnosis = Literal["COVID", "CAP"]
CohortSet = Literal["earlier", "later"]
#: Which bin shares a patient's ratio follows: its class's (the paper's) or both classes'.
Shares = Literal["paper", "balanced"]
SHARES: tuple[Shares, ...] = ("paper", "balanced")
SAMPLING_THRESHOLDS = {"COVID": RATIO_LARGE, "CAP": RATIO_TINY}
#: The paper's analysis bins (upper edges; the last bin is open).
RATIO_BINS = ANALYSIS_BINS


@dataclass(frozen=True)
class Stratum:
    name: str
    diagnosis: Diagnosis
    low: float
    high: float
    group: str
    weight_earlier: int
    weight_later: int

    def weight(self, cohort_set: CohortSet) -> int:
        return self.weight_earlier if cohort_set == "earlier" else self.weight_later

    @property
    def bin(self) -> str:
        return ratio_bin(self.low)


STRATA: tuple[Stratum, ...] = (
    Stratum("c_low", "COVID", 8e-5, 8.6e-4, "covid_small", 118, 284),
    Stratum("c_a1", "COVID", 1.2e-3, 4.9e-3, "covid_small", 33, 79),
    Stratum("c_mid", "COVID", 5.1e-3, 0.026, "covid_small", 318, 718),
    Stratum("c_high", "COVID", 0.036, 0.30, "covid_large", 625, 1214),
    Stratum("p_low", "CAP", 8e-5, 8.6e-4, "cap_small", 655, 341),
    Stratum("p_a1", "CAP", 1.2e-3, 4.9e-3, "cap_large", 183, 95),
    Stratum("p_mid", "CAP", 5.1e-3, 0.026, "cap_large", 183, 41),
    Stratum("p_high", "CAP", 0.036, 0.30, "cap_large", 71, 24),
)


def ratio_bin(ratio: float) -> str:
    """The paper's analysis bin of an infection ratio."""
    if ratio < RATIO_SMALL:
        return RATIO_BINS[0]
    return RATIO_BINS[1] if ratio <= RATIO_LARGE else RATIO_BINS[2]


def sampling_group(diagnosis: str, ratio: float) -> str:
    """The paper's sampling group (METHOD.md): covid/cap x small/large."""
    if diagnosis == "COVID":
        return "covid_small" if ratio < SAMPLING_THRESHOLDS["COVID"] else "covid_large"
    return "cap_small" if ratio <= SAMPLING_THRESHOLDS["CAP"] else "cap_large"


def strata_of(diagnosis: Diagnosis) -> tuple[Stratum, ...]:
    return tuple(s for s in STRATA if s.diagnosis == diagnosis)


def stratum(name: str) -> Stratum:
    return next(s for s in STRATA if s.name == name)


#: The balanced part's share of each range, the same for both classes (by the range's
#: suffix: c_low / p_low, ...): infections either tiny or extensive, rarely between.
#: Shares like these keep the ratio uninformative inside the part while COVID stays
#: mostly large and CAP mostly small overall, so both size-balanced weights stay above
#: one (1.11 and 1.15 expected at balanced_fraction 0.5); the pooled bin shares of both
#: classes (45 / 23 / 32 %) would push them below one (0.80 / 0.91), and the SS branch
#: would then sample small COVID and large CAP LESS often, against its purpose.
BALANCED_SHARES: dict[str, float] = {"low": 0.47, "a1": 0.03, "mid": 0.02, "high": 0.48}


def stratum_weight(s: Stratum, cohort_set: CohortSet, shares: Shares = "paper") -> float:
    """A stratum's weight: the paper's count, or its range's `BALANCED_SHARES` (the same
    for both classes and sets)."""
    if shares == "paper":
        return float(s.weight(cohort_set))
    return BALANCED_SHARES[s.name.split("_", 1)[1]]


def group_shares(diagnosis: Diagnosis, cohort_set: CohortSet, balanced_fraction: float = 0.0
                 ) -> dict[str, float]:
    """Expected share of each sampling group among the class's scans of a set."""
    shares: dict[str, float] = {}
    parts: tuple[tuple[Shares, float], ...] = (("paper", 1.0 - balanced_fraction),
                                               ("balanced", balanced_fraction))
    strata = strata_of(diagnosis)
    for part, fraction in parts:
        weights = [stratum_weight(s, cohort_set, part) for s in strata]
        for s, w in zip(strata, weights, strict=True):
            shares[s.group] = shares.get(s.group, 0.0) + fraction * w / sum(weights)
    return shares


def size_balanced_weights(counts: dict[str, float]) -> dict[str, float]:
    """The two SS weights above one, W_covid_small and W_cap_large (NaN for an empty group)."""
    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    return {"covid_small": ratio(counts.get("covid_large", 0), counts.get("covid_small", 0)),
            "cap_large": ratio(counts.get("cap_small", 0), counts.get("cap_large", 0))}


def expected_weights(cohort_set: CohortSet = "earlier", balanced_fraction: float = 0.0
                     ) -> dict[str, float]:
    """W_covid_small and W_cap_large of an infinitely large set (1.33 and 1.50 for the
    paper's TV shares; lower with a balanced part)."""
    return size_balanced_weights({**group_shares("COVID", cohort_set, balanced_fraction),
                                  **group_shares("CAP", cohort_set, balanced_fraction)})


def stratum_quotas(diagnosis: Diagnosis, cohort_set: CohortSet, n_scans: int,
                   shares: Shares = "paper") -> dict[str, int]:
    """Scans per stratum for `n_scans` scans of one class: largest remainder, ties in order."""
    strata = strata_of(diagnosis)
    weights = np.array([stratum_weight(s, cohort_set, shares) for s in strata], dtype=float)
    exact = n_scans * weights / weights.sum()
    quotas = np.floor(exact).astype(int)
    order = sorted(range(len(strata)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[: n_scans - int(quotas.sum())]:
        quotas[i] += 1
    return {s.name: int(q) for s, q in zip(strata, quotas, strict=True)}


def deal_strata(sizes: list[int], quotas: dict[str, int], rng: np.random.Generator
                ) -> list[str]:
    """A stratum per patient (`sizes`: scans each) so that the scans meet `quotas`.

    Patients are dealt in random order, multi-scan patients first, each to the stratum
    furthest behind its quota in proportion (one that still has room for all its
    scans when any does): the strata fill at the same pace, so no stratum collects the
    repeat scanners, and the single-scan patients at the end fill the quotas exactly.
    """
    names = list(quotas)
    left = dict(quotas)
    order = sorted(rng.permutation(len(sizes)).tolist(), key=lambda i: -min(sizes[i], 2))
    chosen = [""] * len(sizes)
    for i in order:
        room = [n for n in names if left[n] >= sizes[i]] or names
        best = max(room, key=lambda n: (left[n] / max(quotas[n], 1), left[n]))
        chosen[i] = best
        left[best] -= sizes[i]
    return chosen


def ratio_at(name: str, quantile: float) -> float:
    """The ratio at `quantile` (0..1) of the stratum's log-uniform range."""
    s = stratum(name)
    return float(np.exp(np.log(s.low) + quantile * (np.log(s.high) - np.log(s.low))))


def spread_quantiles(strata: list[str], rng: np.random.Generator) -> list[float]:
    """A quantile per patient, Latin-hypercube within each stratum.

    The k patients of a stratum get one quantile from each of k equal slices (in a
    random order), so even a small cohort covers each range evenly instead of
    clumping where independent draws happen to fall.
    """
    quantiles = [0.0] * len(strata)
    for name in sorted(set(strata)):
        members = [i for i, s in enumerate(strata) if s == name]
        slots = rng.permutation(len(members))
        for i, slot in zip(members, slots, strict=True):
            quantiles[i] = float((slot + rng.random()) / len(members))
    return quantiles


def follow_up_ratio(name: str, previous: float, rng: np.random.Generator) -> float:
    """A follow-up scan's ratio: the previous one times a log-normal change, kept in range."""
    s = stratum(name)
    lo, hi = np.log(s.low), np.log(s.high)
    value = np.log(previous) + rng.normal(0.0, 0.4)
    # Reflect at the range ends so the ends do not pile up.
    value = lo + abs(value - lo) if value < lo else value
    value = hi - abs(value - hi) if value > hi else value
    return float(np.exp(np.clip(value, lo, hi)))
