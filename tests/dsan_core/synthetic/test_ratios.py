"""The cohort's joint distribution of infection ratios (dsan_core.synthetic.ratios)."""

from __future__ import annotations

import numpy as np
import pytest

from dsan_core.synthetic.ratios import (
    SAMPLING_THRESHOLDS,
    STRATA,
    deal_strata,
    expected_weights,
    follow_up_ratio,
    group_shares,
    ratio_at,
    ratio_bin,
    sampling_group,
    spread_quantiles,
    strata_of,
    stratum_quotas,
    stratum_weight,
)

#: METHOD.md's table: scans per analysis bin (< 0.005, 0.005-0.030, > 0.030).
PAPER_BINS = {("earlier", "COVID"): (151, 318, 625), ("earlier", "CAP"): (838, 183, 71),
              ("later", "COVID"): (363, 718, 1214), ("later", "CAP"): (436, 41, 24)}
BINS = ("<0.005", "0.005-0.030", ">0.030")


@pytest.mark.parametrize("key", sorted(PAPER_BINS))
def test_strata_add_up_to_the_papers_bins(key: tuple[str, str]) -> None:
    cohort_set, diagnosis = key
    totals = dict.fromkeys(BINS, 0)
    for s in strata_of(diagnosis):  # type: ignore[arg-type]
        assert ratio_bin(s.low) == ratio_bin(np.nextafter(s.high, 0)), s.name  # one bin each
        totals[ratio_bin(s.low)] += s.weight(cohort_set)  # type: ignore[arg-type]
    assert tuple(totals.values()) == PAPER_BINS[key]


def test_expected_weights_are_the_papers() -> None:
    tv = expected_weights("earlier")
    assert tv["covid_small"] == pytest.approx(625 / 469)  # 1.33
    assert tv["cap_large"] == pytest.approx(655 / 437)  # 1.50
    assert 1.3 <= tv["covid_small"] <= 1.5 and tv["cap_large"] == pytest.approx(1.5, abs=0.01)
    # ~78 % of the CAP scans below 0.005 are at or below 0.001 (~655 of 838).
    low_cap = [s for s in strata_of("CAP") if s.high <= 0.005]
    small = sum(s.weight_earlier for s in low_cap if s.group == "cap_small")
    assert small / sum(s.weight_earlier for s in low_cap) == pytest.approx(0.78, abs=0.01)
    assert group_shares("CAP", "earlier")["cap_small"] == pytest.approx(0.60, abs=0.005)


def test_strata_keep_clear_of_the_sampling_thresholds() -> None:
    for s in STRATA:
        t = SAMPLING_THRESHOLDS[s.diagnosis]
        assert s.high <= t / 1.15 or s.low >= 1.2 * t, s.name
        assert sampling_group(s.diagnosis, s.low) == sampling_group(s.diagnosis, s.high) == s.group


@pytest.mark.parametrize("n_scans", [1, 2, 3, 5, 8, 13, 21, 34, 63, 250])
@pytest.mark.parametrize("cohort_set", ["earlier", "later"])
@pytest.mark.parametrize("diagnosis", ["COVID", "CAP"])
@pytest.mark.parametrize("shares", ["paper", "balanced"])
def test_quotas_are_shares_to_within_one_scan(n_scans: int, cohort_set: str,
                                              diagnosis: str, shares: str) -> None:
    quotas = stratum_quotas(diagnosis, cohort_set, n_scans, shares)  # type: ignore[arg-type]
    assert sum(quotas.values()) == n_scans
    strata = strata_of(diagnosis)  # type: ignore[arg-type]
    weights = [stratum_weight(s, cohort_set, shares) for s in strata]  # type: ignore[arg-type]
    for s, w in zip(strata, weights, strict=True):
        assert abs(quotas[s.name] - n_scans * w / sum(weights)) < 1.0


def test_deal_meets_quotas_with_repeat_scanners() -> None:
    rng = np.random.default_rng(0)
    sizes = [3, 2, 2, 3, 2] + [1] * 25
    quotas = stratum_quotas("CAP", "earlier", sum(sizes))
    chosen = deal_strata(sizes, quotas, rng)
    got = {name: sum(n for n, c in zip(sizes, chosen, strict=True) if c == name)
           for name in quotas}
    assert got == quotas


def test_ratios_stay_in_their_stratum() -> None:
    rng = np.random.default_rng(1)
    names = [s.name for s in STRATA for _ in range(7)]
    quantiles = spread_quantiles(names, rng)
    for name, q in zip(names, quantiles, strict=True):
        s = next(x for x in STRATA if x.name == name)
        ratio = ratio_at(name, q)
        assert s.low <= ratio <= s.high
        for _ in range(5):
            ratio = follow_up_ratio(name, ratio, rng)
            assert s.low <= ratio <= s.high
    # Latin hypercube: one quantile in each seventh of the range per stratum.
    first = sorted(int(q * 7) for n, q in zip(names, quantiles, strict=True) if n == "c_low")
    assert first == list(range(7))


@pytest.mark.parametrize("cohort_set", ["earlier", "later"])
def test_inside_a_bin_both_classes_have_the_same_ratio_distribution(cohort_set: str) -> None:
    """Same ranges per bin, and the same share of each range within its bin (to rounding)."""
    for name in BINS:
        per_class = {}
        for diagnosis in ("COVID", "CAP"):
            strata = [s for s in strata_of(diagnosis) if s.bin == name]  # type: ignore[arg-type]
            total = sum(s.weight(cohort_set) for s in strata)  # type: ignore[arg-type]
            per_class[diagnosis] = {(s.low, s.high): s.weight(cohort_set) / total  # type: ignore[arg-type]
                                    for s in strata}
        assert per_class["COVID"].keys() == per_class["CAP"].keys(), name
        for key, share in per_class["COVID"].items():
            assert share == pytest.approx(per_class["CAP"][key], abs=0.002), (name, key)


@pytest.mark.parametrize("cohort_set", ["earlier", "later"])
def test_balanced_shares_are_the_same_for_both_classes(cohort_set: str) -> None:
    pooled = {}
    for diagnosis in ("COVID", "CAP"):
        strata = strata_of(diagnosis)  # type: ignore[arg-type]
        weights = [stratum_weight(s, cohort_set, "balanced") for s in strata]  # type: ignore[arg-type]
        pooled[diagnosis] = [(s.low, s.high, w / sum(weights))
                             for s, w in zip(strata, weights, strict=True)]
    for (lo, hi, covid), (lo2, hi2, cap) in zip(pooled["COVID"], pooled["CAP"], strict=True):
        assert (lo, hi) == (lo2, hi2) and covid == pytest.approx(cap, abs=0.001)
    # Mostly tiny or extensive: 47 % at or below 0.001, 48 % above 0.030.
    assert [round(w, 2) for _, _, w in pooled["COVID"]] == [0.47, 0.03, 0.02, 0.48]


def test_a_balanced_part_lowers_both_expected_weights_but_keeps_them_above_one() -> None:
    paper, mixed = expected_weights("earlier"), expected_weights("earlier", 0.5)
    assert mixed["covid_small"] < paper["covid_small"] and mixed["cap_large"] < paper["cap_large"]
    # The SS branch still samples small COVID and large CAP more often than uniform.
    assert mixed["covid_small"] > 1.05 and mixed["cap_large"] > 1.05
    assert expected_weights("earlier", 1.0)["covid_small"] == pytest.approx(0.48 / 0.52)
    covid = group_shares("COVID", "earlier", 0.5)
    # Half at the paper's 625 / 1094 large, half at the balanced 48 %.
    assert covid["covid_large"] == pytest.approx(0.5 * 625 / 1094 + 0.5 * 0.48)
    assert sum(covid.values()) == pytest.approx(1.0)
