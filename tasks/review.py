"""Human-in-the-loop mask review: `dsan masks export` and `dsan masks import`.

Export: the scans without ground truth (ingested or reviewed, `storage.truth`) are
segmented by the data root's VB-Net (or, before there is one, the classical segmenter),
scored (`dsan_core.segmentation.review`: mean predictive entropy in the lung; cached per
scan by content as `review-score` items), and the N to review are written for reviewers:
per scan `ct.nii.gz`, the proposal as `lung.nii.gz` + `infection.nii.gz` and as one 3D
Slicer segmentation `segmentation.seg.nrrd`; `manifest.json` / `manifest.csv` (pseudonymous
ids only) and `README.txt`. Each proposal is kept in the data root (`mask_proposals`).

Import: per scan of the folder, the corrected masks (whichever of the files the reviewer
edited), checked like external masks (grid, values) and refused with the reason (then
nothing is imported); each accepted one is stored as ground truth with a `mask_reviews`
row (reviewer, time, Dice between proposal and correction, voxels changed) and a lineage
row. The next `dsan run` retrains the VB-Net and recomputes what those masks changed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.config import SegmentationConfig
from dsan_core.errors import DsanError, MaskError, StageError
from dsan_core.grid import ScanGeometry, check_same_grid
from dsan_core.segmentation import (
    infection_ratio,
    infection_threshold_of,
    load_vbnet,
    masks_at,
    segment_classical,
    spacing_of,
    split_label_map,
    volume_probs,
)
from dsan_core.segmentation.external import conform_mask
from dsan_core.segmentation.review import (
    ReviewChange,
    Strategy,
    compare_review,
    pick_for_review,
    review_counts,
    review_score,
)
from dsan_core.segmentation.slicer import label_map, masks_of, place_on_grid
from storage.atomic import write_bytes, write_json, write_text
from storage.checkpoints import load_checkpoint
from storage.hashing import hash_json, sha256_bytes
from storage.inputs import ReviewFolder
from storage.lineage import LineageRow, new_run_id, record_lineage, utcnow
from storage.schemas import MASK_PROPOSALS, MASK_REVIEWS
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, require_tables, table_exists, write_table
from storage.truth import INGESTED, REVIEWED, latest_reviews, truth_masks
from storage.volumes import (
    image_array,
    read_array,
    read_image,
    read_segmentation,
    write_array,
    write_segmentation,
)
from tasks._common.contract import MapItem, StageItems, StageRun, cached_map
from tasks.segmentation import current_vbnet

SCORE_STAGE = "review-score"
EXPORT_STAGE = "mask-export"
IMPORT_STAGE = "mask-import"
#: Bump when a proposal or its score would differ for the same scan and segmenter.
VERSION = "1"
SEG_FILE = "segmentation.seg.nrrd"
NIFTI_PAIR = ("lung.nii.gz", "infection.nii.gz")
LABEL_MAP = "labels.nii.gz"
README = """Masks proposed for review by dsan (export {export_id}, {segmenter}).

Per scan folder (pseudonymous scan id):
  ct.nii.gz               the CT
  segmentation.seg.nrrd   the proposal as one 3D Slicer segmentation: segments
                          "lung" (label 1, the lung outside the infection) and
                          "infection" (label 2)
  lung.nii.gz, infection.nii.gz   the same proposal as two binary NIfTI masks

Correct ONE of them in place: in 3D Slicer, load ct.nii.gz and segmentation.seg.nrrd
(as a segmentation), edit with the Segment Editor, and save the segmentation back to
segmentation.seg.nrrd (keep the segment names lung and infection; a cropped save is
fine); or edit lung.nii.gz / infection.nii.gz (values 0/1, on the CT's grid) in any
editor; or write labels.nii.gz (0 background, 1 lung, 2 infection). A scan left as
it is counts as reviewed with the proposal accepted.

Then: dsan masks import <this folder> --reviewer <your name>
and the next dsan run retrains the VB-Net with the corrections.
Scans, in review order: manifest.csv
"""


@dataclass(frozen=True)
class Segmenter:
    tag: str
    network: torch.nn.Module | None  # None: classical
    threshold: float
    device: torch.device


@dataclass(frozen=True)
class ExportOutcome:
    export_id: str
    folder: Path
    strategy: str  # the one used
    segmenter: str
    picked: tuple[tuple[str, float, float], ...]  # scan id, score (NaN: not scored), ratio
    candidates: int
    notes: tuple[str, ...]

    def summary(self) -> list[str]:
        lines = [*self.notes,
                 f"export {self.export_id}: {len(self.picked)} of {self.candidates} scans "
                 f"without reviewed masks, by {self.strategy}, proposals by {self.segmenter}"]
        lines += [f"  {rank}. {scan_id}" + ("" if math.isnan(score)
                                              else f" uncertainty {score:.4f}")
                  + ("" if math.isnan(ratio) else f", proposed infection ratio {ratio:.4f}")
                  for rank, (scan_id, score, ratio) in enumerate(self.picked, 1)]
        return lines


@dataclass(frozen=True)
class ImportedReview:
    scan_id: str
    source: str
    change: ReviewChange | None  # None: no proposal to compare with


@dataclass(frozen=True)
class ImportOutcome:
    imported: tuple[ImportedReview, ...]
    unchanged: tuple[str, ...]  # same masks as the scan's latest import: skipped

    def summary(self) -> list[str]:
        lines = []
        for r in self.imported:
            change = ("no proposal to compare with" if r.change is None else
                      f"Dice to the proposal: lung {r.change.lung_dice:.4f}, infection "
                      f"{r.change.infection_dice:.4f}; {r.change.voxels_changed} voxels changed")
            lines.append(f"{r.scan_id}: imported from {r.source} ({change})")
        if self.unchanged:
            lines.append(f"unchanged since their last import (skipped): {len(self.unchanged)}")
        lines.append(f"imported {len(self.imported)} reviewed scan(s) as ground truth: the next "
                     "dsan run retrains the VB-Net and recomputes what they changed")
        return lines


# --- export ---------------------------------------------------------------------------


@task(name="export_for_review_task", cache_policy=NO_CACHE, persist_result=False)
def export_for_review_task(data_root: Path, config: SegmentationConfig, n: int,
                           strategy: Strategy, folder: ReviewFolder | None, device: str, *,
                           seed: int = 0, include_proposed: bool = False,
                           run_id: str | None = None) -> ExportOutcome:
    """Pick `n` scans without ground truth and write their proposals for reviewers."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        require_tables(run.layout, "scans")
        scans = read_table(run.layout, "scans").sort_values("scan_id").set_index(
            "scan_id", drop=False)
        done = set(truth_masks(run.layout)["scan_id"])
        pending = pending_proposals(run)
        candidates = [s for s in scans.index if s not in done
                      and (include_proposed or s not in pending)]
        if not candidates:
            raise StageError(f"no scan to propose: of {len(scans)} scans, {len(done)} have "
                             f"ground truth and {len(pending)} await review (import them, or "
                             "give --include-proposed)")
        segmenter, notes = _segmenter(run, config, device)
        used = strategy
        if strategy == "uncertainty" and segmenter.network is None:
            used = "random"
            notes.append("no VB-Net yet (no reviewed masks to train one): scans drawn at random "
                         "instead of by uncertainty")
        to_score = candidates if used == "uncertainty" else \
            pick_for_review(dict.fromkeys(candidates, 0.0), n, "random", seed=seed)
        proposals = _propose(run, config, segmenter, scans.loc[to_score], logger)
        scores = {s: m.data["score"] for s, m in proposals.items()}
        picked = (pick_for_review(scores, n, "uncertainty") if used == "uncertainty"
                  else [s for s in to_score if s in proposals])
        export_id = new_run_id()
        out = folder.folder if folder is not None else run.layout.review_export(export_id)
        rows = _write_export(run, out, export_id, used, segmenter.tag, picked, proposals, scans)
        _append(run, "mask_proposals", pd.DataFrame(rows, columns=MASK_PROPOSALS.names))
        _lineage(run, EXPORT_STAGE, {s: str(scans.loc[s, "volume_hash"]) for s in picked},
                 {f"{s}:{k}": proposals[s].outputs[k]["sha256"] for s in picked
                  for k in ("lung", "infection")}, segmenter.tag)
    logger.info("exported %d scans for review (%s)", len(picked), used)
    return ExportOutcome(export_id, out, used, segmenter.tag,
                         tuple((s, float(scores[s]), float(proposals[s].data["infection_ratio"]))
                               for s in picked), len(candidates), tuple(notes))


def pending_proposals(run: StageRun) -> set[str]:
    """Scans proposed to reviewers and not imported since."""
    if not table_exists(run.layout, "mask_proposals"):
        return set()
    proposed = read_table(run.layout, "mask_proposals").groupby("scan_id")["proposed_at"].max()
    reviewed = latest_reviews(run.layout).set_index("scan_id")["reviewed_at"]
    return {s for s, at in proposed.items() if s not in reviewed.index or reviewed[s] < at}


def _segmenter(run: StageRun, config: SegmentationConfig,
               device: str) -> tuple[Segmenter, list[str]]:
    """The data root's current VB-Net, else the classical segmenter."""
    model = current_vbnet(run, config)
    if model is None:
        tag = f"classical__{config.classical.fingerprint()}"
        return Segmenter(tag, None, 0.5, torch.device(device)), [
            "proposals by the classical segmenter: no VB-Net trained on the current ground "
            "truth (dsan run trains one once there are scans with masks)"]
    weights = load_checkpoint(model.stage.output_path(run.layout, "model"))
    threshold = infection_threshold_of(weights, config.vbnet)
    network = load_vbnet(weights, config.vbnet, torch.device(device))
    return Segmenter(f"vbnet__{model.model_version}", network, threshold,
                     torch.device(device)), []


def _propose(run: StageRun, config: SegmentationConfig, segmenter: Segmenter,
             scans: pd.DataFrame, logger: Any) -> dict[str, Manifest]:
    """Proposal masks and scores of `scans`, cached per scan (volume, segmenter)."""
    items = [MapItem(str(row.scan_id), {"volume": str(row.volume_hash),
                                        "threshold": f"{segmenter.threshold:.6g}"}, (row,))
             for row in scans.itertuples(index=False)]
    done = cached_map(run, StageItems(SCORE_STAGE, VERSION, segmenter.tag, items),
                      compute=partial(_propose_one, run, config, segmenter),
                      description="scoring scans for review", unit="scans")
    for message in done.failures.values():
        logger.warning("no proposal: %s", message)
    return done.manifests


def _propose_one(run: StageRun, config: SegmentationConfig, segmenter: Segmenter,
                 scan: Any) -> Manifest:
    image = read_image(run.layout.resolve(scan.volume_path))
    hu = image_array(image, np.float32)
    spacing = spacing_of(image)
    if segmenter.network is not None:
        probs = volume_probs(segmenter.network, hu, spacing, config.vbnet, segmenter.device)
        lung, infection = masks_at(probs, segmenter.threshold)
        score = review_score(probs, lung)
    else:
        lung, infection = segment_classical(hu, spacing, config.classical, scan_id=scan.scan_id)
        score = float("nan")
    ratio = (infection_ratio(lung, infection, spacing, scan_id=scan.scan_id).infection_ratio
             if lung.any() else float("nan"))
    outputs = {}
    for kind, mask in (("lung", lung), ("infection", infection)):
        path = run.layout.proposal_mask(segmenter.tag, scan.scan_id, kind)
        write_array(mask, image, path, np.uint8)
        outputs[kind] = artifact(run.layout, path, run.memo)
    return Manifest(SCORE_STAGE, "", outputs, {"score": score, "infection_ratio": ratio})


def _write_export(run: StageRun, out: Path, export_id: str, strategy: str, segmenter: str,
                  picked: list[str], proposals: dict[str, Manifest],
                  scans: pd.DataFrame) -> list[dict[str, Any]]:
    """The reviewers' folder, and the `mask_proposals` rows of this export."""
    now = pd.Timestamp.now(tz="UTC")
    rows, listed = [], []
    for rank, scan_id in enumerate(picked, 1):
        manifest = proposals[scan_id]
        folder = out / scan_id
        volume = run.layout.resolve(str(scans.loc[scan_id, "volume_path"]))
        write_bytes(folder / "ct.nii.gz", volume.read_bytes())
        masks = []
        for kind, name in zip(("lung", "infection"), NIFTI_PAIR, strict=True):
            source = manifest.output_path(run.layout, kind)
            write_bytes(folder / name, source.read_bytes())
            masks.append(read_array(source))
        write_segmentation(label_map(masks[0], masks[1]), read_image(volume),
                           folder / SEG_FILE)
        score, ratio = float(manifest.data["score"]), float(manifest.data["infection_ratio"])
        rows.append({"export_id": export_id, "scan_id": scan_id, "proposed_at": now,
                     "strategy": strategy, "rank": rank, "score": score, "segmenter": segmenter,
                     "infection_ratio": ratio,
                     **{f"{k}_{f}": manifest.outputs[k][f2] for k in ("lung", "infection")
                        for f, f2 in (("path", "path"), ("hash", "sha256"))}})
        listed.append({"rank": rank, "scan_id": scan_id,
                       "uncertainty": None if math.isnan(score) else round(score, 6),
                       "proposed_infection_ratio": None if math.isnan(ratio) else round(ratio, 6),
                       "folder": scan_id})
    write_json(out / "manifest.json", {
        "export_id": export_id, "created_at": now.isoformat(timespec="seconds"),
        "strategy": strategy, "segmenter": segmenter, "scans": listed})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(listed[0]) if listed else ["scan_id"])
    writer.writeheader()
    writer.writerows(listed)
    write_text(out / "manifest.csv", text.getvalue())
    write_text(out / "README.txt", README.format(export_id=export_id, segmenter=segmenter))
    return rows


# --- import ---------------------------------------------------------------------------


@task(name="import_reviews_task", cache_policy=NO_CACHE, persist_result=False)
def import_reviews_task(data_root: Path, folder: ReviewFolder, reviewer: str,
                        run_id: str | None = None) -> ImportOutcome:
    """Every scan of a review folder as ground truth; nothing when one is refused."""
    logger = get_run_logger()
    if not reviewer.strip():
        raise StageError("expected a reviewer's name (--reviewer NAME), found none")
    with StageRun.open(data_root, run_id) as run:
        require_tables(run.layout, "scans")
        scans = read_table(run.layout, "scans").set_index("scan_id", drop=False)
        export_id, scan_ids = _listed(folder.folder, set(scans.index))
        proposals = _proposals(run, export_id)
        accepted, refused = {}, []
        for scan_id in scan_ids:
            try:
                image = read_image(run.layout.resolve(str(scans.loc[scan_id, "volume_path"])))
                accepted[scan_id] = _corrected(run, folder.folder / scan_id, scan_id, image,
                                               proposals.get(scan_id))
            except DsanError as error:
                refused.append(str(error))
        if refused:
            raise MaskError(f"{len(refused)} of {len(scan_ids)} scans refused, nothing "
                            f"imported: {'; '.join(refused)}", reason="review")
        outcome = _store(run, accepted, scans, proposals, reviewer.strip(), export_id)
    logger.info("imported %d reviewed scans", len(outcome.imported))
    return outcome


def _listed(folder: Path, known: set[str]) -> tuple[str, list[str]]:
    """The export id and scan ids of a review folder (its manifest, else its scan folders)."""
    if not folder.is_dir():
        raise StageError("the review folder does not exist (give the folder dsan masks export "
                         "wrote)")
    manifest = folder / "manifest.json"
    if manifest.is_file():
        payload = json.loads(manifest.read_text())
        ids = [str(s["scan_id"]) for s in payload.get("scans", [])]
        export_id = str(payload.get("export_id", ""))
    else:
        ids = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name in known)
        export_id = ""
    unknown = [s for s in ids if s not in known]
    if unknown:
        raise StageError(f"expected scans of this data root, found {len(unknown)} others "
                         f"({', '.join(unknown[:3])}): another data root's review folder?")
    if not ids:
        raise StageError("expected scan folders (named by scan id) in the review folder, "
                         "found none")
    return export_id, ids


def _proposals(run: StageRun, export_id: str) -> dict[str, Any]:
    """The proposal each scan was shown: of this export, else its latest."""
    if not table_exists(run.layout, "mask_proposals"):
        return {}
    rows = read_table(run.layout, "mask_proposals").sort_values("proposed_at", kind="stable")
    mine = rows[rows["export_id"] == export_id]
    chosen = pd.concat([rows[~rows["scan_id"].isin(set(mine["scan_id"]))], mine])
    return {str(r.scan_id): r for r in chosen.groupby("scan_id").tail(1).itertuples(index=False)}


def _read_pair(run: StageRun, lung_path: str, infection_path: str) -> tuple[np.ndarray, ...]:
    return tuple(read_array(run.layout.resolve(p), np.uint8) for p in (lung_path, infection_path))


def _corrected(run: StageRun, folder: Path, scan_id: str, image: sitk.Image,
               proposal: Any) -> tuple[str, np.ndarray, np.ndarray]:
    """(source, lung, infection): the edited one of the scan's files, checked on its grid."""
    versions = _versions(folder, scan_id, image)
    if not versions:
        raise MaskError(f"expected corrected masks in its folder ({SEG_FILE}, or "
                        f"{' + '.join(NIFTI_PAIR)}, or {LABEL_MAP}), found none", scan=scan_id,
                        reason="missing")
    before = (_read_pair(run, proposal.lung_path, proposal.infection_path)
              if proposal is not None else None)

    def same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
        return all(np.array_equal(x.astype(bool), y.astype(bool)) for x, y in zip(a, b,
                                                                                    strict=True))

    edited = {k: v for k, v in versions.items() if before is None or not same(v, before)}
    if not edited:  # nothing changed: the proposal accepted as it is
        source = next(iter(versions))
        return source, *versions[source]
    first = next(iter(edited))
    if any(not same(edited[first], other) for other in edited.values()):
        raise MaskError(f"expected one corrected version, found {len(edited)} that differ "
                        f"({', '.join(edited)}): keep the edits in one of them", scan=scan_id,
                        reason="ambiguous")
    return first, *edited[first]


def _versions(folder: Path, scan_id: str,
              image: sitk.Image) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each form of corrected masks present, as (lung, infection) on the scan's grid."""
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if not folder.is_dir():
        return found
    scan = ScanGeometry.from_image(image)
    segmentations = sorted(folder.glob("*.seg.nrrd"))
    if len(segmentations) > 1:
        raise MaskError(f"expected one .seg.nrrd, found {len(segmentations)}", scan=scan_id,
                        reason="ambiguous")
    if segmentations:
        labels, geometry = read_segmentation(segmentations[0], scan_id=scan_id)
        found["seg.nrrd"] = masks_of(place_on_grid(labels, geometry, scan, scan_id=scan_id,
                                                   kind="segmentation"))
    pair = [folder / name for name in NIFTI_PAIR]
    if all(p.is_file() for p in pair):
        lung, infection = (image_array(conform_mask(read_image(p), image, scan_id=scan_id,
                                                    kind=kind))
                           for p, kind in zip(pair, ("lung", "infection"), strict=True))
        found["nifti"] = (lung | infection, infection)
    if (folder / LABEL_MAP).is_file():
        labels_image = read_image(folder / LABEL_MAP)
        check_same_grid(ScanGeometry.from_image(labels_image), scan, scan_id=scan_id,
                        kind="label map")
        found["label map"] = split_label_map(image_array(labels_image),
                                             scan_id=scan_id)
    return found


def _store(run: StageRun, accepted: dict[str, tuple[str, np.ndarray, np.ndarray]],
           scans: pd.DataFrame, proposals: dict[str, Any], reviewer: str,
           export_id: str) -> ImportOutcome:
    """Write each changed review as ground truth, its row and one lineage row."""
    latest = latest_reviews(run.layout).set_index("scan_id")
    now = pd.Timestamp.now(tz="UTC")
    rows, imported, unchanged = [], [], []
    inputs, outputs = {}, {}
    for scan_id, (source, lung, infection) in accepted.items():
        labels = label_map(lung, infection)
        review_id = sha256_bytes(scan_id.encode() + labels.tobytes())[:12]
        if scan_id in latest.index and latest.loc[scan_id, "review_id"] == review_id:
            unchanged.append(scan_id)
            continue
        image = read_image(run.layout.resolve(str(scans.loc[scan_id, "volume_path"])))
        stored = {}
        for kind, mask in (("lung", lung), ("infection", infection)):
            path = run.layout.reviewed_mask(scan_id, review_id, kind)
            write_array(mask, image, path, np.uint8)
            stored[kind] = artifact(run.layout, path, run.memo)
        proposal = proposals.get(scan_id)
        change = (compare_review(_read_pair(run, proposal.lung_path, proposal.infection_path),
                                 (lung, infection)) if proposal is not None else None)
        rows.append({"review_id": review_id, "scan_id": scan_id, "reviewer": reviewer,
                     "reviewed_at": now, "export_id": export_id, "source": source,
                     "proposal_segmenter": "" if proposal is None else proposal.segmenter,
                     "lung_dice": math.nan if change is None else change.lung_dice,
                     "infection_dice": math.nan if change is None else change.infection_dice,
                     "voxels_changed": -1 if change is None else change.voxels_changed,
                     **{f"{k}_{f}": stored[k][f2] for k in ("lung", "infection")
                        for f, f2 in (("path", "path"), ("hash", "sha256"))}})
        imported.append(ImportedReview(scan_id, source, change))
        inputs[scan_id] = hash_json({"labels": sha256_bytes(labels.tobytes())})
        outputs |= {f"{scan_id}:{k}": stored[k]["sha256"] for k in stored}
    if rows:
        _append(run, "mask_reviews", pd.DataFrame(rows, columns=MASK_REVIEWS.names))
        _lineage(run, IMPORT_STAGE, inputs, outputs, "-")
    return ImportOutcome(tuple(imported), tuple(unchanged))


# --- status ---------------------------------------------------------------------------


def review_status(run: StageRun) -> list[str]:
    """`dsan masks status`: scans by review state, and the reviews so far."""
    scans = sorted(read_table(run.layout, "scans")["scan_id"])
    truth = truth_masks(run.layout)
    counts = review_counts(scans, set(truth.loc[truth["source"] == INGESTED, "scan_id"]),
                           set(truth.loc[truth["source"] == REVIEWED, "scan_id"]),
                           pending_proposals(run))
    lines = [f"scans {counts['scans']}: reviewed {counts['reviewed']}, ground truth from "
             f"ingestion {counts['ground_truth']}, proposed (awaiting review) "
             f"{counts['proposed']}, never seen {counts['never_seen']}"]
    reviews = latest_reviews(run.layout)
    if len(reviews):
        compared = reviews[reviews["voxels_changed"] >= 0]
        by = ", ".join(f"{name} {n}" for name, n in
                       reviews["reviewer"].value_counts().sort_index().items())
        lines.append(f"reviewers: {by}; last import {reviews['reviewed_at'].max():%Y-%m-%d %H:%M}"
                     " UTC")
        if len(compared):
            lines.append(f"proposal vs correction (median over {len(compared)} scans): lung "
                         f"Dice {compared['lung_dice'].median():.4f}, infection Dice "
                         f"{compared['infection_dice'].median():.4f}, voxels changed "
                         f"{int(compared['voxels_changed'].median())}")
    return lines


# --- shared ---------------------------------------------------------------------------


def _append(run: StageRun, name: str, rows: pd.DataFrame) -> None:
    if table_exists(run.layout, name):
        rows = pd.concat([read_table(run.layout, name), rows], ignore_index=True)
    write_table(run.layout, name, rows)


def _lineage(run: StageRun, stage: str, inputs: dict[str, str], outputs: dict[str, str],
             config: str) -> None:
    record_lineage(run.layout, LineageRow(
        run_id=run.run_id, stage=stage, key=hash_json({"inputs": inputs, "at":
                                                       datetime.now(UTC).isoformat()})[:32],
        cache_hit=False, input_hashes=inputs, output_hashes=outputs, config_hash=config,
        started_at=run.started, ended_at=utcnow()))
