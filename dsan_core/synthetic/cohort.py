"""The cohort plan: who is scanned where and when, with which label and infection ratio.

Everything is drawn from `SynthConfig.seed`, so a plan is reproducible, and every
fake identifier (name, patient id, birth date, UIDs) is exposed here so tests can
check that none of them leaks downstream.

Infection ratios follow the paper's train-validation distribution over the analysis
bins (< 0.005, 0.005-0.030, > 0.030; COVID 151/318/625, CAP 838/183/71 scans), drawn
log-uniformly within a bin. With n_patients >= 8 and two patients per class, the first
studies of four patients are pinned to the four sampling groups (covid_small,
covid_large, cap_small, cap_large) so even a tiny cohort has all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np

from dsan_core.config import SynthConfig
from dsan_core.synthetic.sites import SiteProfile, site_profiles
from dsan_core.synthetic.uids import make_uid

Diagnosis = Literal["COVID", "CAP"]
StudyRole = Literal[
    "cohort", "truncated_file", "missing_slice", "non_ct_series", "label_without_dicom",
    "dicom_without_label",
]

_BIN_WEIGHTS = {"COVID": (151, 318, 625), "CAP": (838, 183, 71)}
_BIN_RANGES = {"COVID": ((2e-4, 5e-3), (5e-3, 0.03), (0.03, 0.30)),
               "CAP": ((2e-4, 5e-3), (5e-3, 0.03), (0.03, 0.20))}
#: Ranges that sit clearly inside one sampling group (used to pin the four groups).
_PINNED = (("COVID", (0.006, 0.02)), ("COVID", (0.06, 0.2)),
           ("CAP", (3e-4, 7e-4)), ("CAP", (2e-3, 0.02)))
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
    role: StudyRole = "cohort"

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


def _draw_ratio(diagnosis: Diagnosis, rng: np.random.Generator) -> float:
    weights = np.array(_BIN_WEIGHTS[diagnosis], dtype=float)
    b = int(rng.choice(3, p=weights / weights.sum()))
    if diagnosis == "CAP" and b == 0 and rng.random() < 0.1:
        return float(np.exp(rng.uniform(np.log(3e-5), np.log(2e-4))))  # essentially clear
    lo, hi = _BIN_RANGES[diagnosis][b]
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def plan_cohort(config: SynthConfig) -> CohortPlan:
    """Plan the labelled patients plus, with include_broken, the extra broken ones."""
    rng = np.random.default_rng([config.seed, 1])
    sites = site_profiles(config.sites)
    n = config.n_patients
    n_covid = int(round(n * config.covid_fraction))
    if n >= 8 and 0.0 < config.covid_fraction < 1.0:
        n_covid = min(max(n_covid, 2), n - 2)
    covid: Diagnosis = "COVID"
    cap: Diagnosis = "CAP"
    diagnoses = [covid] * n_covid + [cap] * (n - n_covid)
    order = rng.permutation(n)
    diagnoses = [diagnoses[i] for i in order]
    roles: list[StudyRole] = ["cohort"] * n
    if config.include_broken:
        roles += ["truncated_file", "missing_slice", "non_ct_series", "label_without_dicom",
                  "dicom_without_label"]
        extra: tuple[Diagnosis, Diagnosis] = ("COVID", "CAP")
        diagnoses += [extra[i % 2] for i in range(5)]
    total = len(roles)

    pinned: dict[int, tuple[float, float]] = {}
    if n >= 8:
        for diagnosis, bounds in _PINNED:
            free = [i for i in range(n) if diagnoses[i] == diagnosis and i not in pinned]
            if free:
                pinned[free[0]] = bounds
    repeaters = set(rng.choice(n, size=int(round(n * config.repeat_fraction)), replace=False))

    span_days = max((config.last_date - config.first_date).days, 0)
    names = rng.permutation(len(_SURNAMES) * len(_GIVEN["F"]))
    ids = rng.choice(9_000_000, size=total, replace=False) + 1_000_000
    patients: list[PatientPlan] = []
    studies: list[StudyPlan] = []
    for i in range(total):
        diagnosis = diagnoses[i]
        sex: Literal["F", "M"] = "F" if rng.random() < 0.5 else "M"
        median = 50.0 if diagnosis == "COVID" else 57.0
        age = int(np.clip(round(rng.normal(median, 15.0)), 18, 92))
        n_studies = int(rng.integers(2, 4)) if i in repeaters else 1
        first = config.first_date + timedelta(days=int(rng.integers(0, span_days + 1)))
        if n_studies > 1:
            first = min(first, config.last_date - timedelta(days=min(8 * n_studies, span_days)))
        anniversary = date(first.year - age, first.month, min(first.day, 28))
        birth = anniversary - timedelta(days=int(rng.integers(0, 360)))
        name_idx = int(names[i % names.size])
        surname = _SURNAMES[name_idx % len(_SURNAMES)]
        given = _GIVEN[sex][(name_idx // len(_SURNAMES)) % len(_GIVEN[sex])]
        site = sites[int(rng.integers(0, len(sites)))].name
        patients.append(PatientPlan(i + 1, f"PID{int(ids[i]):07d}", f"{surname}^{given}", sex,
                                    birth, diagnosis, site))
        if i in pinned:
            lo, hi = pinned[i]
            ratio = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        else:
            ratio = _draw_ratio(diagnosis, rng)
        day = first
        for k in range(n_studies):
            if k:
                day = min(day + timedelta(days=int(rng.integers(4, 15))), config.last_date)
                ratio = float(np.clip(ratio * np.exp(rng.normal(0.0, 0.6)), 3e-5, 0.35))
            number = len(studies) + 1
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
                seed=(config.seed, number), role=roles[i],
            ))
    return CohortPlan(tuple(patients), tuple(studies), sites)
