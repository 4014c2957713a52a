"""Generate a whole synthetic cohort on disk: DICOM export, masks, labels, ground truth.

Layout under `out_dir`:
    dicom/P0001/S0001/SE0001/IM0001.dcm   localizer (SE0001), thin (SE0002), thick (SE0003)
    masks/<SeriesInstanceUID>_lung.nii.gz, ..._infection.nii.gz   (thin-series geometry)
    labels.csv         patient_id,study_instance_uid,diagnosis,site,acquisition_date
    ground_truth.csv   series_instance_uid,infection_ratio,lung_ml,infection_ml,ratio_bin

Same SynthConfig -> byte-identical files; re-running over an existing out_dir rewrites
the same bytes (files from an earlier, different config are not deleted).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsan_core.config import SynthConfig
from dsan_core.synthetic.cohort import StudyPlan, plan_cohort
from dsan_core.synthetic.dicom_export import atomic_write_bytes, write_secondary_capture
from dsan_core.synthetic.masks import write_mask
from dsan_core.synthetic.phantom import Phantom, make_phantom
from dsan_core.synthetic.study_writer import StudyGeometry, write_ct_study

LABEL_COLUMNS = ("patient_id", "study_instance_uid", "diagnosis", "site", "acquisition_date")
GROUND_TRUTH_COLUMNS = (
    "series_instance_uid", "infection_ratio", "lung_ml", "infection_ml", "ratio_bin",
)
RATIO_BINS = ("<0.005", "0.005-0.030", ">0.030")


def ratio_bin(ratio: float) -> str:
    """The paper's analysis bin of an infection ratio."""
    if ratio < 0.005:
        return RATIO_BINS[0]
    return RATIO_BINS[1] if ratio <= 0.030 else RATIO_BINS[2]


def sampling_group(diagnosis: str, ratio: float) -> str:
    """The paper's sampling group (METHOD.md): covid/cap x small/large."""
    if diagnosis == "COVID":
        return "covid_small" if ratio < 0.030 else "covid_large"
    return "cap_small" if ratio <= 0.001 else "cap_large"


@dataclass(frozen=True)
class BrokenInput:
    """A deliberately unusable input; `path` is relative to out_dir (no identifiers)."""

    kind: str
    study_instance_uid: str | None
    path: str | None


@dataclass(frozen=True)
class CohortSummary:
    """Counts of what `generate_cohort` wrote."""

    patients: int
    studies: int
    thin_series: int
    files: int
    label_rows: int
    broken_inputs: tuple[BrokenInput, ...]
    per_class: dict[str, int]
    per_ratio_bin: dict[str, int]
    per_sampling_group: dict[str, int]

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
            f"broken inputs ({len(self.broken_inputs)}):",
        ]
        lines += [f"  - {b.kind}: {b.path or '(no file)'}" for b in self.broken_inputs]
        return "\n".join(lines)


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


def study_phantom(config: SynthConfig, study: StudyPlan) -> Phantom:
    """The in-memory phantom (HU, lung, infection) that `generate_cohort` exports for `study`."""
    px = config.fov_mm / config.matrix
    return make_phantom(
        (config.n_slices, config.matrix, config.matrix),
        (px, px, config.slice_thickness_mm),
        np.random.default_rng(list(study.seed)),
        diagnosis=study.diagnosis,
        target_ratio=study.target_ratio,
    )


def generate_cohort(
    config: SynthConfig,
    out_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> CohortSummary:
    """Write the synthetic export, masks, labels.csv and ground_truth.csv under `out_dir`."""
    plan = plan_cohort(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    px = config.fov_mm / config.matrix
    geometry = StudyGeometry(config.matrix, config.n_slices, px, config.slice_thickness_mm)
    files = 0
    broken: list[BrokenInput] = []
    label_rows: list[tuple[str, ...]] = []
    truth_rows: list[tuple[str, ...]] = []
    per_class: dict[str, int] = {}
    per_bin: dict[str, int] = {}
    per_group: dict[str, int] = {}
    non_ct: StudyPlan | None = None
    dicom_patients: set[int] = set()

    for done, study in enumerate(plan.studies, start=1):
        patient = plan.patient(study.patient_number)
        site = plan.site(study.site)
        folder = out_dir / "dicom" / f"P{study.patient_number:04d}" / f"S{study.study_number:04d}"
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
            phantom = study_phantom(config, study)
            written = write_ct_study(folder, patient, study, site, phantom, geometry,
                                     include_localizer=config.include_localizer,
                                     include_thick=config.include_thick_series)
            files += written.files
            if written.broken is not None:
                broken.append(BrokenInput(study.role, study.study_instance_uid,
                                          str(written.broken.relative_to(out_dir))))
            else:
                uid = written.thin_series_uid
                write_mask(out_dir / "masks" / f"{uid}_lung.nii.gz", phantom.lung,
                           written.mask_geometry)
                write_mask(out_dir / "masks" / f"{uid}_infection.nii.gz", phantom.infection,
                           written.mask_geometry)
                ratio = phantom.infection_ratio
                truth_rows.append((uid, _fmt(ratio), _fmt(phantom.lung_ml),
                                   _fmt(phantom.infection_ml), ratio_bin(ratio)))
                if study.role == "dicom_without_label":
                    broken.append(BrokenInput(study.role, study.study_instance_uid,
                                              str(folder.relative_to(out_dir))))
                if study.role == "cohort":
                    per_class[study.diagnosis] = per_class.get(study.diagnosis, 0) + 1
                    per_bin[ratio_bin(ratio)] = per_bin.get(ratio_bin(ratio), 0) + 1
                    group = sampling_group(study.diagnosis, ratio)
                    per_group[group] = per_group.get(group, 0) + 1
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
    return CohortSummary(
        patients=len(dicom_patients),
        studies=sum(1 for s in plan.studies if s.has_dicom),
        thin_series=len(truth_rows),
        files=files,
        label_rows=len(label_rows),
        broken_inputs=tuple(broken),
        per_class=per_class,
        per_ratio_bin=per_bin,
        per_sampling_group=per_group,
    )
