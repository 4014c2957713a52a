"""Generate a whole synthetic cohort on disk: DICOM export, masks, labels, ground truth.

Layout under `out_dir`:
    dicom/P0001/S0001/SE0001/IM0001.dcm   localizer (SE0001), thin (SE0002), thick (SE0003)
    masks/<SeriesInstanceUID>_lung.nii.gz, ..._infection.nii.gz   (thin-series geometry)
    labels.csv         patient_id,study_instance_uid,diagnosis,site,acquisition_date
    ground_truth.csv   series_instance_uid,infection_ratio,lung_ml,infection_ml,ratio_bin

Each study is rendered and written a slab at a time (`PhantomPlan.slabs` into
`CtStudyWriter`): memory holds the two uint8 masks and one slab, so paper-sized
studies (512 x 512 x 300+) need well under 1 GB. The summary adds, per set, the class
mix and the size-balanced weights expected from `ratios` and realised by ground truth.

Same SynthConfig -> byte-identical files; re-running over an existing out_dir rewrites
the same bytes (files from an earlier, different config are not deleted).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from dsan_core.config import SynthConfig
from dsan_core.synthetic.cohort import PatientPlan, StudyPlan, plan_cohort
from dsan_core.synthetic.dicom_export import atomic_write_bytes, write_secondary_capture
from dsan_core.synthetic.masks import write_mask
from dsan_core.synthetic.phantom import Phantom, PhantomPlan, plan_phantom
from dsan_core.synthetic.ratios import (
    RATIO_BINS,
    CohortSet,
    expected_weights,
    ratio_bin,
    sampling_group,
    size_balanced_weights,
)
from dsan_core.synthetic.sites import SiteProfile, site_profiles
from dsan_core.synthetic.study_writer import CtStudyWriter, StudyGeometry, WrittenStudy

LABEL_COLUMNS = ("patient_id", "study_instance_uid", "diagnosis", "site", "acquisition_date")
GROUND_TRUTH_COLUMNS = (
    "series_instance_uid", "infection_ratio", "lung_ml", "infection_ml", "ratio_bin",
)


@dataclass(frozen=True)
class BrokenInput:
    """A deliberately unusable input; `path` is relative to out_dir (no identifiers)."""

    kind: str
    study_instance_uid: str | None
    path: str | None


@dataclass(frozen=True)
class CohortSummary:
    """Counts of what `generate_cohort` wrote; groups and weights by ground truth.

    `per_set` and `groups_per_set` count the labelled, usable scans of each set
    ("earlier", and "later" when the config has a cutoff) per class and per sampling
    group; `expected_weights` are the joint distribution's (`ratios`) per set.
    """

    patients: int
    studies: int
    thin_series: int
    files: int
    label_rows: int
    broken_inputs: tuple[BrokenInput, ...]
    per_class: dict[str, int]
    per_ratio_bin: dict[str, int]
    per_sampling_group: dict[str, int]
    per_set: dict[str, dict[str, int]] = field(default_factory=dict)
    groups_per_set: dict[str, dict[str, int]] = field(default_factory=dict)
    expected_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    cutoff: date | None = None

    def realised_weights(self, cohort_set: str) -> dict[str, float]:
        """W_covid_small and W_cap_large of a set's scans (NaN for an empty group)."""
        counts = self.groups_per_set.get(cohort_set, {})
        return size_balanced_weights({k: float(v) for k, v in counts.items()})

    def _set_lines(self) -> list[str]:
        lines = ["per set (class mix; size-balanced weights W expected / realised):"]
        for name in sorted(self.per_set, key=("earlier", "later").index):
            classes = self.per_set[name]
            covid, cap = classes.get("COVID", 0), classes.get("CAP", 0)
            share = 100.0 * covid / (covid + cap) if covid + cap else 0.0
            when = "all scans" if self.cutoff is None else (
                f"earlier (before {self.cutoff})" if name == "earlier"
                else f"later (from {self.cutoff})")
            expected, realised = self.expected_weights.get(name, {}), self.realised_weights(name)
            weights = ", ".join(f"W_{g} {_weight(expected.get(g))} / {_weight(realised[g])}"
                                for g in ("covid_small", "cap_large"))
            lines.append(f"  {when}: COVID {covid}, CAP {cap} ({share:.0f} % COVID); "
                         f"{weights}")
        return lines

    def as_text(self) -> str:
        lines = [
            f"patients with DICOM: {self.patients}",
            f"studies with DICOM:  {self.studies}",
            f"usable thin series:  {self.thin_series}",
            f"files under dicom/:  {self.files}",
            f"labels.csv rows:     {self.label_rows}",
            "labelled scans per class: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.per_class.items())),
            "per ratio bin: "
            + ", ".join(f"{k} {self.per_ratio_bin.get(k, 0)}" for k in RATIO_BINS),
            "per sampling group: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.per_sampling_group.items())),
            *self._set_lines(),
            f"broken inputs ({len(self.broken_inputs)}):",
        ]
        lines += [f"  - {b.kind}: {b.path or '(no file)'}" for b in self.broken_inputs]
        return "\n".join(lines)


def _weight(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _csv_bytes(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _fmt(value: float) -> str:
    return f"{value:.8g}"


def _junk_files(out_dir: Path, non_ct: StudyPlan | None) -> list[BrokenInput]:
    """Non-DICOM files where exports often have them: a readme, a DICOMDIR-like blob, a preview."""
    dicom = out_dir / "dicom"
    readme = dicom / "README.txt"
    atomic_write_bytes(readme, b"Export created by PACS export tool.\nDo not edit.\n")
    junk = dicom / "DICOMDIR"
    atomic_write_bytes(junk, b"DICM" + bytes(range(256)) * 4)  # no preamble: not DICOM
    found = [BrokenInput("non_dicom_file", None, str(readme.relative_to(out_dir))),
             BrokenInput("non_dicom_file", None, str(junk.relative_to(out_dir)))]
    if non_ct is not None:
        study_folder = dicom / f"P{non_ct.patient_number:04d}" / f"S{non_ct.study_number:04d}"
        preview = study_folder / "preview.jpg"
        atomic_write_bytes(preview, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(512) + b"\xff\xd9")
        found.append(BrokenInput("non_dicom_file", non_ct.study_instance_uid,
                                 str(preview.relative_to(out_dir))))
    return found


def study_geometry(config: SynthConfig, study: StudyPlan) -> StudyGeometry:
    """Matrix, slices and spacings of `study`'s thin series."""
    return StudyGeometry(config.matrix, study.n_slices, config.fov_mm / config.matrix,
                         study.slice_thickness_mm)


def study_site(config: SynthConfig, study: StudyPlan) -> SiteProfile:
    """The profile (tags and pixel effects) of the site that scanned `study`."""
    later = config.later_cap_site if config.later_cutoff is not None else None
    return next(s for s in site_profiles(config.sites, later) if s.name == study.site)


def study_phantom_plan(config: SynthConfig, study: StudyPlan) -> PhantomPlan:
    """The phantom plan (chest, distractors, lesions, cut, the site's scanner) of `study`;
    render it with `.slabs()`."""
    g = study_geometry(config, study)
    return plan_phantom(
        (g.n_slices, g.matrix, g.matrix),
        (g.pixel_mm, g.pixel_mm, g.slice_mm),
        np.random.default_rng(list(study.seed)),
        diagnosis=study.diagnosis,
        target_ratio=study.target_ratio,
        scanner=study_site(config, study).scanner,
    )


def study_phantom(config: SynthConfig, study: StudyPlan) -> Phantom:
    """The whole in-memory phantom (HU, lung, infection) that `generate_cohort` exports."""
    return study_phantom_plan(config, study).render()


@dataclass
class _Tally:
    per_class: dict[str, int] = field(default_factory=dict)
    per_bin: dict[str, int] = field(default_factory=dict)
    per_group: dict[str, int] = field(default_factory=dict)
    per_set: dict[str, dict[str, int]] = field(default_factory=dict)
    groups_per_set: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, study: StudyPlan, ratio: float) -> None:
        group = sampling_group(study.diagnosis, ratio)
        for counts, key in ((self.per_class, study.diagnosis), (self.per_bin, ratio_bin(ratio)),
                            (self.per_group, group),
                            (self.per_set.setdefault(study.cohort_set, {}), study.diagnosis),
                            (self.groups_per_set.setdefault(study.cohort_set, {}), group)):
            counts[key] = counts.get(key, 0) + 1


@dataclass(frozen=True)
class _StudyOutcome:
    """What the cohort's tables need of one written study (small: crosses processes)."""

    written: WrittenStudy
    infection_ratio: float
    lung_voxels: int
    infection_voxels: int


def _write_one(config: SynthConfig, out_dir: Path, folder: Path, study: StudyPlan,
               plan_patient: PatientPlan, site: SiteProfile) -> _StudyOutcome:
    written, phantom = _write_study(config, out_dir, folder, study, plan_patient, site)
    return _StudyOutcome(written, phantom.infection_ratio, phantom.lung_voxels,
                         phantom.infection_voxels)


def _write_study(config: SynthConfig, out_dir: Path, folder: Path, study: StudyPlan,
                 plan_patient: PatientPlan, site: SiteProfile
                 ) -> tuple[WrittenStudy, PhantomPlan]:
    """Stream one study's phantom into its DICOM series and, when usable, its masks."""
    geometry = study_geometry(config, study)
    phantom = study_phantom_plan(config, study)
    writer = CtStudyWriter(folder, plan_patient, study, site, geometry,
                           include_localizer=config.include_localizer,
                           include_thick=config.include_thick_series)
    shape = (geometry.n_slices, geometry.matrix, geometry.matrix)
    lung = np.zeros(shape, dtype=np.uint8)
    infection = np.zeros(shape, dtype=np.uint8)
    for slab in phantom.slabs():
        writer.add(slab.hu)
        z1 = slab.z0 + slab.hu.shape[0]
        lung[slab.z0:z1], infection[slab.z0:z1] = slab.lung, slab.infection
    written = writer.finish()
    if written.broken is None:
        uid = written.thin_series_uid
        write_mask(out_dir / "masks" / f"{uid}_lung.nii.gz", lung, written.mask_geometry)
        write_mask(out_dir / "masks" / f"{uid}_infection.nii.gz", infection,
                   written.mask_geometry)
    return written, phantom


def generate_cohort(
    config: SynthConfig,
    out_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> CohortSummary:
    """Write the synthetic export, masks, labels.csv and ground_truth.csv under `out_dir`.

    `workers` > 1 renders the studies in that many processes; every study is seeded on
    its own and written to its own folder, so the files are the same bytes either way.
    """
    plan = plan_cohort(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = 0
    broken: list[BrokenInput] = []
    label_rows: list[tuple[str, ...]] = []
    truth_rows: list[tuple[str, ...]] = []
    tally = _Tally()
    non_ct: StudyPlan | None = None
    dicom_patients: set[int] = set()

    def folder_of(study: StudyPlan) -> Path:
        return out_dir / "dicom" / f"P{study.patient_number:04d}" / f"S{study.study_number:04d}"

    rendered = [s for s in plan.studies if s.role not in ("label_without_dicom", "non_ct_series")]
    jobs = [(config, out_dir, folder_of(s), s, plan.patient(s.patient_number), plan.site(s.site))
            for s in rendered]
    stack = contextlib.ExitStack()
    outcomes: Iterator[_StudyOutcome]
    if workers > 1 and len(jobs) > 1:
        pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
        # In plan order, as the serial loop: the tables below do not depend on workers.
        outcomes = iter(pool.map(_write_one, *zip(*jobs, strict=True)))
    else:
        outcomes = (_write_one(*job) for job in jobs)

    with stack:  # the pool, if any, ends with the loop (or its error)
        for done, study in enumerate(plan.studies, start=1):
            patient = plan.patient(study.patient_number)
            site = plan.site(study.site)
            folder = folder_of(study)
            if study.has_label:
                label_rows.append((patient.patient_id, study.study_instance_uid, study.diagnosis,
                                   study.site, study.study_date.isoformat()))
            if study.role == "label_without_dicom":
                broken.append(BrokenInput(study.role, study.study_instance_uid, None))
            elif study.role == "non_ct_series":
                non_ct = study
                image = np.zeros((64, 96), dtype=np.uint8)
                image[8:56:8, 8:88] = 200  # text-like lines of a report screenshot
                path = write_secondary_capture(folder / "SE0001", patient, study, site, 1, image)
                files += 1
                broken.append(BrokenInput(study.role, study.study_instance_uid,
                                          str(path.parent.relative_to(out_dir))))
            else:
                outcome = next(outcomes)
                written = outcome.written
                files += written.files
                if written.broken is not None:
                    broken.append(BrokenInput(study.role, study.study_instance_uid,
                                              str(written.broken.relative_to(out_dir))))
                else:
                    ratio = outcome.infection_ratio
                    voxel_ml = written.mask_geometry.voxel_ml
                    truth_rows.append((written.thin_series_uid, _fmt(ratio),
                                       _fmt(outcome.lung_voxels * voxel_ml),
                                       _fmt(outcome.infection_voxels * voxel_ml), ratio_bin(ratio)))
                    if study.role == "dicom_without_label":
                        broken.append(BrokenInput(study.role, study.study_instance_uid,
                                                  str(folder.relative_to(out_dir))))
                    if study.role == "cohort":
                        tally.add(study, ratio)
            if study.has_dicom:
                dicom_patients.add(study.patient_number)
            if progress is not None:
                progress(done, len(plan.studies))

    if config.include_broken:
        junk = _junk_files(out_dir, non_ct)
        files += len(junk)
        broken += junk
    atomic_write_bytes(out_dir / "labels.csv", _csv_bytes(LABEL_COLUMNS, label_rows))
    atomic_write_bytes(out_dir / "ground_truth.csv", _csv_bytes(GROUND_TRUTH_COLUMNS, truth_rows))
    sets: tuple[CohortSet, ...] = ("earlier", "later") if config.later_cutoff else ("earlier",)
    return CohortSummary(
        patients=len(dicom_patients),
        studies=sum(1 for s in plan.studies if s.has_dicom),
        thin_series=len(truth_rows),
        files=files,
        label_rows=len(label_rows),
        broken_inputs=tuple(broken),
        per_class=tally.per_class,
        per_ratio_bin=tally.per_bin,
        per_sampling_group=tally.per_group,
        per_set=tally.per_set,
        groups_per_set=tally.groups_per_set,
        expected_weights={name: expected_weights(name, config.balanced_fraction)
                          for name in sets},
        cutoff=config.later_cutoff,
    )
