"""Do the networks carry a site offset? Per site: what the inputs look like and where the
trained branches put their P(COVID), and each branch's AUC within one site beside its AUC
over all sites, from an evaluated data root.

    .venv/bin/python benchmarks/site_shift.py --data-root DIR [--json-out FILE]

A network that ranks the scans of one site well but moves every scan of a site up or
down by the site's look (its noise, reconstruction kernel, HU calibration) loses AUC
wherever the classes come from different sites in different shares: the paper's test
set, whose CAP scans all come from a hospital the training never saw, is built that
way (the synthetic cohort's `later_cap_site` too). Printed, from the data root's tables
and pre-processed inputs:

- per (set, site, label): scans, the mean of each branch's P(COVID) (test: the fold
  models' mean; TV: out-of-fold), and two properties of the network input inside the
  lung: its median (brightness: window units, 0.02 = 30 HU) and the SD of its fine
  detail (input minus its 3x3x3 mean inside the lung: the kernel's sharpness and the
  noise that survive the resampling);
- per branch and set: AUC over all scans, and within each site that has both classes
  (with their counts), beside the infection ratio's (the ground-truth masks').

Synthetic sites differ only by such appearance (`dsan_core.synthetic.sites`), so on the
demo cohort a within-site AUC well above the pooled one measures the site offset, not
the lesions. Runs on the CPU; reads, writes nothing in the data root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.ndimage import uniform_filter  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from dsan_core.branches import ATT_SS, ATT_US, RN34_US  # noqa: E402
from dsan_core.groups import LABEL_COVID  # noqa: E402
from storage.layout import DataLayout  # noqa: E402
from storage.tables import read_table, table_exists  # noqa: E402
from storage.volumes import open_npy  # noqa: E402

BRANCHES = (RN34_US, ATT_US, ATT_SS)


def scan_table(layout: DataLayout) -> pd.DataFrame:
    """One row per pre-processed scan: set (tv / test), site, label, infection ratio and
    the input's lung median and detail SD."""
    scans = read_table(layout, "scans")[["scan_id", "site"]]
    groups = read_table(layout, "groups")[["scan_id", "label", "infection_ratio"]]
    splits = read_table(layout, "splits")[["scan_id", "set"]]
    inputs = read_table(layout, "preprocessed")[["scan_id", "input_path"]]
    frame = (inputs.merge(scans, on="scan_id").merge(groups, on="scan_id")
             .merge(splits, on="scan_id"))
    looks = [_look(open_npy(layout.resolve(path))) for path in frame["input_path"]]
    frame["lung_median"] = [m for m, _ in looks]
    frame["detail_sd"] = [d for _, d in looks]
    return frame.drop(columns="input_path")


def _look(image: np.ndarray) -> tuple[float, float]:
    """The lung's median and the SD of its fine detail: each lung voxel minus the 3x3x3
    mean of its lung neighbours (the zeros outside the lung left out of the mean)."""
    x = np.asarray(image, dtype=np.float32)
    lung = x > 0
    weight = uniform_filter(lung.astype(np.float32), 3, mode="constant")
    mean = uniform_filter(x * lung, 3, mode="constant") / np.maximum(weight, 1e-6)
    return float(np.median(x[lung])), float((x - mean)[lung].std())


def branch_probabilities(layout: DataLayout) -> pd.DataFrame:
    """P(COVID) per scan and branch: out-of-fold on TV, the fold models' mean on test."""
    predictions = read_table(layout, "predictions")
    predictions = predictions[predictions["branch"].isin(BRANCHES)]
    return (predictions.groupby(["scan_id", "branch"])["probability"].mean()
            .unstack("branch").reset_index())


def _auc(rows: pd.DataFrame, score: str) -> float | None:
    labels = rows["label"] == LABEL_COVID
    if labels.nunique() < 2:
        return None
    return round(float(roc_auc_score(labels, rows[score])), 3)


def summarise(frame: pd.DataFrame) -> dict[str, Any]:
    scores = [b for b in BRANCHES if b in frame.columns] + ["infection_ratio"]
    looks = (frame.groupby(["set", "site", "label"])
             .agg(scans=("scan_id", "size"), lung_median=("lung_median", "mean"),
                  detail_sd=("detail_sd", "mean"),
                  **{f"p_{b}": (b, "mean") for b in scores if b != "infection_ratio"})
             .round(4).reset_index())
    aucs = []
    for set_name, rows in frame.groupby("set"):
        for score in scores:
            line: dict[str, Any] = {"set": set_name, "score": score,
                                    "all_sites": _auc(rows, score), "within": {}}
            for site, at in rows.groupby("site"):
                auc = _auc(at, score)
                if auc is not None:
                    n_covid = int((at["label"] == LABEL_COVID).sum())
                    line["within"][site] = {"auc": auc, "n_covid": n_covid,
                                            "n_cap": len(at) - n_covid}
            aucs.append(line)
    return {"benchmark": "site_shift", "per_site": looks.to_dict("records"), "auc": aucs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="an evaluated data root")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    layout = DataLayout(args.data_root)
    if not table_exists(layout, "predictions"):
        parser.error(f"no predictions table under {args.data_root}: run `dsan run` first")
    frame = scan_table(layout).merge(branch_probabilities(layout), on="scan_id", how="left")
    summary = summarise(frame)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(summary["per_site"]).to_string(index=False))
    print("\nAUC over all sites, and within each site with both classes (COVID / CAP):")
    for line in summary["auc"]:
        within = ", ".join(f"{site} {v['auc']} ({v['n_covid']}/{v['n_cap']})"
                           for site, v in line["within"].items())
        print(f"  {line['set']:4s} {line['score']:16s} all {line['all_sites']}  "
              f"within: {within}")
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
