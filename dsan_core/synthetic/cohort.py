"""The cohort plan: who is scanned where and when, with which label and infection ratio.

Everything is drawn from `SynthConfig.seed`, so a plan is reproducible, and every
fake identifier (name, patient id, birth date, UIDs) is exposed here so tests can
check that none of them leaks downstream.

Infection ratios come from the joint distribution over analysis bins and sampling
groups in `dsan_core.synthetic.ratios`, dealt as quotas per set, class and part:
`SynthConfig.balanced_fraction` of each set's patients of each class follow the bin
shares of both classes pooled ("balanced"), the others their class's own, the
paper's TV shares for the earlier set and its test shares for the later one
("paper"). With `SynthConfig.later_cutoff` the patients split into an earlier set
(before the cutoff, sites `sites`) and a later, mostly-COVID set (on or after it),
whose CAP patients all come from `later_cap_site`; later COVID patients come from any
site. A patient's studies all fall in its set's date window.

Sites carry pixel effects (`sites`), so which patient goes where matters: the earlier
set's patients are dealt to its sites class by class, in blocks of one patient per
site (ordered by part and stratum), so every earlier site holds each class's
patients in the same proportion (to within one patient) and a similar spread of
ratios. Site effects are independent of the label there by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np

from dsan_core.config import SynthConfig
from dsan_core.synthetic.ratios import (
    SHARES,
    CohortSet,
    Diagnosis,
    Shares,
    deal_strata,
    follow_up_ratio,
    ratio_at,
    spread_quantiles,
    strata_of,
    stratum_quotas,
)
from dsan_core.synthetic.sites import SiteProfile, site_profiles
from dsan_core.synthetic.uids import make_uid

StudyRole = Literal[
    "cohort", "truncated_file", "missing_slice", "non_ct_series", "label_without_dicom",
    "dicom_without_label",
]
BROKEN_ROLES: tuple[StudyRole, ...] = (
    "truncated_file", "missing_slice", "non_ct_series", "label_without_dicom",
    "dicom_without_label",
)
_SURNAMES = (
    "MUELLER", "SCHMIDT", "WANG", "LI", "ZHANG", "GARCIA", "MARTIN", "ROSSI", "NOVAK", "SMITH",
    "JOHNSON", "BROWN", "TANAKA", "SATO", "KIM", "PARK", "NGUYEN", "SILVA", "DUBOIS", "JANSEN",
    "KOWALSKI", "IVANOV", "HANSEN", "OLSEN", "LOPEZ", "CHEN", "LIU", "YANG", "HUANG", "ZHAO",
)
_GIVEN = {
    "F": ("ANNA", "MARIA", "LI NA", "SOFIA", "EMMA", "JING", "YUKI", "CLARA", "LENA", "MEI",
          "HANNA", "EVA", "XIU", "LAURA", "NORA"),
    "M": ("JONAS", "WEI", "LUCAS", "HIRO", "PAUL", "MIN", "DAVID", "JUAN", "TOMAS", "LEON",
          "PETER", "JUN", "MARCO", "ERIK", "HAO"),
}


@dataclass(frozen=True)
class PatientPlan:
    """A fake patient; `number` names the export folder (P0001), never the id."""

    number: int
    patient_id: str
    name: str
    sex: Literal["F", "M"]
    birth_date: date
    diagnosis: Diagnosis
    site: str
    cohort_set: CohortSet
    stratum: str
    shares: Shares = "paper"


@dataclass(frozen=True)
class StudyPlan:
    """One CT study. `seed` drives its phantom; `role` says whether it is a broken input."""

    number: int
    patient_number: int
    study_number: int
    study_instance_uid: str
    frame_of_reference_uid: str
    accession_number: str
    study_id: str
    study_date: date
    study_time: str
    age_years: int
    diagnosis: Diagnosis
    site: str
    target_ratio: float
    seed: tuple[int, int]
    cohort_set: CohortSet
    stratum: str
    slice_thickness_mm: float
    n_slices: int
    role: StudyRole = "cohort"
    shares: Shares = "paper"

    @property
    def has_dicom(self) -> bool:
        return self.role != "label_without_dicom"

    @property
    def has_label(self) -> bool:
        return self.role != "dicom_without_label"

    def series_uid(self, series_number: int) -> str:
        return make_uid(self.seed[0], 2, self.number, series_number)


@dataclass(frozen=True)
class CohortPlan:
    patients: tuple[PatientPlan, ...]
    studies: tuple[StudyPlan, ...]
    sites: tuple[SiteProfile, ...]

    def patient(self, number: int) -> PatientPlan:
        return self.patients[number - 1]

    def site(self, name: str) -> SiteProfile:
        return next(s for s in self.sites if s.name == name)

    def cohort_studies(self) -> tuple[StudyPlan, ...]:
        """The labelled, usable studies (no broken inputs)."""
        return tuple(s for s in self.studies if s.role == "cohort")


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _class_counts(count: int, fraction: float, floor: int) -> int:
    """COVID patients of `count`: rounded, but leaving `floor` of each class when it can."""
    n_covid = int(round(count * fraction))
    if 0.0 < fraction < 1.0 and count >= 2 * floor:
        n_covid = min(max(n_covid, floor), count - floor)
    return n_covid


def _patient_specs(config: SynthConfig, rng: np.random.Generator
                   ) -> list[tuple[CohortSet, Diagnosis]]:
    """(set, diagnosis) of every labelled patient, in a random order."""
    n = config.n_patients
    n_later = 0
    if config.later_cutoff is not None:
        n_later = min(max(int(round(n * config.later_fraction)), 1), n - 1)
    n_earlier = n - n_later
    covid: Diagnosis = "COVID"
    cap: Diagnosis = "CAP"
    earlier: CohortSet = "earlier"
    later: CohortSet = "later"
    n_covid = _class_counts(n_earlier, config.covid_fraction, 2 if n_earlier >= 8 else 0)
    later_covid = _class_counts(n_later, config.later_covid_fraction, 1)
    specs = ([(earlier, covid)] * n_covid + [(earlier, cap)] * (n_earlier - n_covid)
             + [(later, covid)] * later_covid + [(later, cap)] * (n_later - later_covid))
    return [specs[i] for i in rng.permutation(n)]


def _study_counts(specs: list[tuple[CohortSet, Diagnosis]], repeat_fraction: float,
                  rng: np.random.Generator) -> list[int]:
    """Studies per labelled patient: 2 or 3 for `repeat_fraction` of each (set, class).

    Per (set, class) rather than overall, so the classes' scan counts (and with them
    the sampling-group quotas) do not swing with where the repeat scanners fall.
    """
    sizes = [1] * len(specs)
    for key in sorted(set(specs)):
        members = [i for i, spec in enumerate(specs) if spec == key]
        n_repeat = int(round(len(members) * repeat_fraction))
        chosen = rng.choice(len(members), size=n_repeat, replace=False)
        extra = rng.permutation(np.arange(n_repeat) % 2)  # as many 3-scan as 2-scan patients
        for j, more in zip(chosen, extra, strict=True):
            sizes[members[j]] = 2 + int(more)
    return sizes


def _shares(specs: list[tuple[CohortSet, Diagnosis]], balanced_fraction: float,
            rng: np.random.Generator) -> list[Shares]:
    """Which ratio shares each labelled patient follows: `balanced_fraction` of every
    (set, class), rounded, follow the pooled ones."""
    shares: list[Shares] = ["paper"] * len(specs)
    for key in sorted(set(specs)):
        members = [i for i, spec in enumerate(specs) if spec == key]
        n_balanced = int(round(len(members) * balanced_fraction))
        for j in rng.choice(len(members), size=n_balanced, replace=False):
            shares[members[int(j)]] = "balanced"
    return shares


def _strata(specs: list[tuple[CohortSet, Diagnosis]], shares: list[Shares], sizes: list[int],
            rng: np.random.Generator) -> list[str]:
    """A ratio stratum per labelled patient, meeting each (set, class, part)'s scan quotas."""
    chosen = [""] * len(specs)
    for key in sorted(set(specs)):
        for part in SHARES:
            members = [i for i, spec in enumerate(specs) if spec == key and shares[i] == part]
            if not members:
                continue
            member_sizes = [sizes[i] for i in members]
            quotas = stratum_quotas(key[1], key[0], sum(member_sizes), part)
            for i, name in zip(members, deal_strata(member_sizes, quotas, rng), strict=True):
                chosen[i] = name
    return chosen


def _deal_sites(config: SynthConfig, specs: list[tuple[CohortSet, Diagnosis]],
                shares: list[Shares], strata: list[str], rng: np.random.Generator
                ) -> list[str]:
    """A site per labelled patient; earlier patients in balanced blocks per class.

    An earlier class's patients, ordered by part and stratum (random within), take the
    sites in blocks of one patient per site, each block in a fresh random order: every
    site gets the same number of each class's patients, to within one.
    """
    sites: list[str] = [""] * len(specs)
    for diagnosis in ("COVID", "CAP"):
        members = [i for i, spec in enumerate(specs) if spec == ("earlier", diagnosis)]
        keys = rng.random(len(members))
        order = sorted(range(len(members)),
                       key=lambda j: (shares[members[j]], strata[members[j]], keys[j]))
        n = len(config.sites)
        for start in range(0, len(order), n):
            block = rng.permutation(n)
            for j, site in zip(order[start:start + n], block, strict=False):
                sites[members[j]] = config.sites[int(site)]
    for i, (cohort_set, diagnosis) in enumerate(specs):
        if cohort_set == "later":
            sites[i] = _site(config, cohort_set, diagnosis, rng)
    return sites


def _window(config: SynthConfig, cohort_set: CohortSet) -> tuple[date, date]:
    cutoff = config.later_cutoff
    if cutoff is None:
        return config.first_date, config.last_date
    if cohort_set == "later":
        return cutoff, config.last_date
    return config.first_date, cutoff - timedelta(days=1)


def _site(config: SynthConfig, cohort_set: CohortSet, diagnosis: Diagnosis,
          rng: np.random.Generator) -> str:
    if cohort_set == "later" and diagnosis == "CAP":
        return config.later_cap_site
    choices = config.sites + ((config.later_cap_site,) if cohort_set == "later" else ())
    return choices[int(rng.integers(0, len(choices)))]


def _random_stratum(diagnosis: Diagnosis, rng: np.random.Generator) -> str:
    strata = strata_of(diagnosis)
    weights = np.array([s.weight_earlier for s in strata], dtype=float)
    return strata[int(rng.choice(len(strata), p=weights / weights.sum()))].name


def plan_cohort(config: SynthConfig) -> CohortPlan:
    """Plan the labelled patients plus, with include_broken, the extra broken ones."""
    rng = np.random.default_rng([config.seed, 1])
    later = config.later_cutoff is not None
    sites = site_profiles(config.sites, config.later_cap_site if later else None)
    n = config.n_patients
    specs = _patient_specs(config, rng)
    sizes = _study_counts(specs, config.repeat_fraction, rng)
    shares = _shares(specs, config.balanced_fraction, rng)
    strata = _strata(specs, shares, sizes, rng)
    site_of = _deal_sites(config, specs, shares, strata, rng)
    roles: list[StudyRole] = ["cohort"] * n
    if config.include_broken:
        roles += list(BROKEN_ROLES)
        for i in range(len(BROKEN_ROLES)):
            diagnosis: Diagnosis = "COVID" if i % 2 == 0 else "CAP"
            specs.append(("earlier", diagnosis))
            sizes.append(1)
            shares.append("paper")
            strata.append(_random_stratum(diagnosis, rng))
            site_of.append(_site(config, "earlier", diagnosis, rng))
    total = len(roles)
    quantiles = spread_quantiles(strata[:n], rng) + [float(rng.random()) for _ in roles[n:]]
    thickness = config.slice_thickness_choices_mm or (config.slice_thickness_mm,)
    coverage = config.n_slices * config.slice_thickness_mm

    names = rng.permutation(len(_SURNAMES) * len(_GIVEN["F"]))
    ids = rng.choice(9_000_000, size=total, replace=False) + 1_000_000
    patients: list[PatientPlan] = []
    studies: list[StudyPlan] = []
    for i in range(total):
        cohort_set, diagnosis = specs[i]
        sex: Literal["F", "M"] = "F" if rng.random() < 0.5 else "M"
        median = 50.0 if diagnosis == "COVID" else 57.0
        age = int(np.clip(round(rng.normal(median, 15.0)), 18, 92))
        start, end = _window(config, cohort_set)
        span_days = max((end - start).days, 0)
        first = start + timedelta(days=int(rng.integers(0, span_days + 1)))
        if sizes[i] > 1:
            first = min(first, end - timedelta(days=min(8 * sizes[i], span_days)))
        anniversary = date(first.year - age, first.month, min(first.day, 28))
        birth = anniversary - timedelta(days=int(rng.integers(0, 360)))
        name_idx = int(names[i % names.size])
        surname = _SURNAMES[name_idx % len(_SURNAMES)]
        given = _GIVEN[sex][(name_idx // len(_SURNAMES)) % len(_GIVEN[sex])]
        site = site_of[i]
        patients.append(PatientPlan(i + 1, f"PID{int(ids[i]):07d}", f"{surname}^{given}", sex,
                                    birth, diagnosis, site, cohort_set, strata[i], shares[i]))
        ratio = ratio_at(strata[i], quantiles[i])
        day = first
        for k in range(sizes[i]):
            if k:
                day = min(day + timedelta(days=int(rng.integers(4, 15))), end)
                ratio = follow_up_ratio(strata[i], ratio, rng)
            number = len(studies) + 1
            thickness_mm = float(thickness[int(rng.integers(0, len(thickness)))])
            studies.append(StudyPlan(
                number=number, patient_number=i + 1, study_number=k + 1,
                study_instance_uid=make_uid(config.seed, 1, number),
                frame_of_reference_uid=make_uid(config.seed, 4, number),
                accession_number=f"A{config.seed % 1000:03d}{number:06d}",
                study_id=str(1000 + number),
                study_date=day,
                study_time=f"{int(rng.integers(7, 20)):02d}{int(rng.integers(0, 60)):02d}"
                f"{int(rng.integers(0, 60)):02d}",
                age_years=_age_on(birth, day),
                diagnosis=diagnosis, site=site, target_ratio=ratio,
                seed=(config.seed, number), cohort_set=cohort_set, stratum=strata[i],
                slice_thickness_mm=thickness_mm,
                n_slices=int(round(coverage / thickness_mm)),
                role=roles[i], shares=shares[i],
            ))
    return CohortPlan(tuple(patients), tuple(studies), sites)
