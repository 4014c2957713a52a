"""Where every artifact lives under the data root. Paths are deterministic and parseable.

    <root>/tables/<name>.parquet                      the Parquet tables (schemas.py)
    <root>/volumes/<scan_id>.nii.gz                   decoded HU volumes
    <root>/ground_truth/<scan_id>_{lung,infection}.nii.gz
    <root>/masks/<tag>/<scan_id>_{lung,infection}.nii.gz
                                                      tag: vbnet__<model>, classical__<config>,
                                                      or external
    <root>/models/<model>__<version>/{last,best}.pt, history.json
                                                      checkpoints (version: training key)
    <root>/models/ensembles/<model_id>.json           a trained ensemble's record
    <root>/preprocessed/<config>/<scan_id>/{input,lung,infection}.npy + geometry.json
    <root>/predictions/{trained,ensemble}.parquet    each stage's rows of `predictions`
    <root>/figures/<stage>/...                        PNG figures
    <root>/reports/<stage>/...                        Markdown / JSON reports
    <root>/splits/versions/<split_version>.parquet    every split version ever written
    <root>/cache/<stage>/<key>.json                   stage manifests (the stage cache)
    <root>/cache/file_hashes.parquet                  the file-hash memo
    <root>/cache/dsan.lock                            one writer at a time (storage.lock)
    <root>/cache/runs/<run_id>.json                   a run's options (storage.run_options)
    <root>/cache/{dask-scratch,matplotlib}/           Dask spill and matplotlib's font cache
    <root>/lineage/<yyyy-mm-dd>/<hhmmssffffff>-<run>-<stage>-<nonce>.parquet
                                                      lineage rows (append-only parts)
    <root>/predict/                                   `dsan predict`'s maps and overlays
    <root>/review/proposals/<tag>/<scan_id>_{lung,infection}.nii.gz
                                                      masks proposed to reviewers
    <root>/review/exports/<export_id>/                `dsan masks export`'s default folder
    <root>/ground_truth/reviewed/<scan_id>/<review_id>_{lung,infection}.nii.gz
                                                      reviewed masks (`dsan masks import`)
    <root>/prefect/                                   PREFECT_HOME: prefect.db of the embedded
                                                      API and of `dsan server` / `dsan ui`,
                                                      server.log

Tables store paths RELATIVE to the root, so a data root can be moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class DataLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).absolute())

    # tables -----------------------------------------------------------------
    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    def table(self, name: str) -> Path:
        return self.tables_dir / f"{name}.parquet"

    # volumes and masks ------------------------------------------------------
    def volume(self, scan_id: str) -> Path:
        return self.root / "volumes" / f"{scan_id}.nii.gz"

    def ground_truth_mask(self, scan_id: str, kind: str) -> Path:
        return self.root / "ground_truth" / f"{scan_id}_{kind}.nii.gz"

    def reviewed_mask(self, scan_id: str, review_id: str, kind: str) -> Path:
        """A reviewer's mask of one import (`mask_reviews`); every import keeps its own."""
        return self.root / "ground_truth" / "reviewed" / scan_id / f"{review_id}_{kind}.nii.gz"

    def proposal_mask(self, segmenter_tag: str, scan_id: str, kind: str) -> Path:
        """A mask proposed to reviewers by the segmenter `segmenter_tag`."""
        return self.root / "review" / "proposals" / segmenter_tag / f"{scan_id}_{kind}.nii.gz"

    def review_export(self, export_id: str) -> Path:
        """Where `dsan masks export` writes by default."""
        return self.root / "review" / "exports" / export_id

    def mask(self, method_tag: str, scan_id: str, kind: str) -> Path:
        return self.root / "masks" / method_tag / f"{scan_id}_{kind}.nii.gz"

    def model_dir(self, name: str, version: str) -> Path:
        return self.root / "models" / f"{name}__{version}"

    def checkpoint(self, name: str, version: str, which: Literal["last", "best"]) -> Path:
        """`last.pt` (the end of the last finished epoch, to resume from) or `best.pt`
        (the weights to use) of model `name` at `version` (its training key)."""
        return self.model_dir(name, version) / f"{which}.pt"

    def model_record(self, model_id: str) -> Path:
        """The record of a trained ensemble: what it is made of and came from."""
        return self.root / "models" / "ensembles" / f"{model_id}.json"

    def training_history(self, name: str, version: str) -> Path:
        return self.model_dir(name, version) / "history.json"

    def preprocessed_dir(self, config_hash: str, scan_id: str) -> Path:
        return self.root / "preprocessed" / config_hash / scan_id

    def preprocessed_file(self, config_hash: str, scan_id: str, name: str) -> Path:
        """One pre-processed output: `name` input | lung | infection (.npy), geometry (.json)."""
        suffix = ".json" if name == "geometry" else ".npy"
        return self.preprocessed_dir(config_hash, scan_id) / f"{name}{suffix}"

    def prediction_part(self, name: str) -> Path:
        """A stage's own rows of the predictions table (`trained`, `ensemble`)."""
        return self.root / "predictions" / f"{name}.parquet"

    # reports ----------------------------------------------------------------
    def figure(self, stage: str, name: str) -> Path:
        return self.root / "figures" / stage / name

    def report(self, stage: str, name: str) -> Path:
        return self.root / "reports" / stage / name

    def ensemble_weights(self) -> Path:
        """The ensemble stage's DS weights (searched or configured) and nested folds."""
        return self.report("ensemble", "weights.json")

    def ensemble_search_figure(self) -> Path:
        """The ensemble stage's weight-search surface (PNG; the evaluation report shows it)."""
        return self.figure("ensemble", "search_surface.png")

    def predict_segmenter(self) -> Path:
        """The card of the segmenter `dsan predict` uses for studies without masks."""
        return self.report("segmentation", "predict_segmenter.json")

    # split versions ---------------------------------------------------------
    @property
    def split_versions_dir(self) -> Path:
        return self.root / "splits" / "versions"

    def split_version(self, version: str) -> Path:
        """The frozen copy of the splits table of one split version."""
        return self.split_versions_dir / f"{version}.parquet"

    def split_versions(self, prefix: str = "") -> list[str]:
        """Stored split versions starting with `prefix`, sorted (temp files skipped)."""
        if not self.split_versions_dir.is_dir():
            return []
        return sorted(path.name.removesuffix(".parquet")
                      for path in self.split_versions_dir.glob(f"{prefix}*.parquet")
                      if not path.name.startswith("."))

    # bookkeeping ------------------------------------------------------------
    def cache_dir(self, stage: str) -> Path:
        return self.root / "cache" / stage

    @property
    def lineage_dir(self) -> Path:
        return self.root / "lineage"

    @property
    def file_hash_memo(self) -> Path:
        return self.root / "cache" / "file_hashes.parquet"

    def run_options(self, run_id: str) -> Path:
        return self.root / "cache" / "runs" / f"{run_id}.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "cache" / "dsan.lock"

    @property
    def dask_scratch(self) -> Path:
        return self.root / "cache" / "dask-scratch"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def matplotlib_cache(self) -> Path:
        return self.root / "cache" / "matplotlib"

    # paths in tables --------------------------------------------------------
    def relative(self, path: Path) -> str:
        return Path(path).absolute().relative_to(self.root).as_posix()

    def resolve(self, relative: str) -> Path:
        return self.root / relative
