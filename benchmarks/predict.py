"""`dsan predict` seconds per study, end to end (DICOM in, probability + attention map out).

    .venv/bin/python benchmarks/predict.py --data-root ROOT --dicom DIR [--masks DIR]
        [--profile demo] [--studies 8]

ROOT must hold a promoted model (`dsan run` to the end); DIR is a DICOM export with one
folder per patient (a `dsan synth` cohort's `dicom/`), whose first patients serve as
"new" studies; `--masks` when the model was trained on imported masks (the demo's
`ground_truth` segmenter). Times `dsan predict` in a new process on 1 patient and on
`--studies` patients; the difference per extra study is the cost of a study, the rest
is the command's fixed start-up (Python, Prefect's temporary API, loading 15 models).
The paper: 4.6 s per scan end to end on a TITAN RTX (with VB-Net segmentation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _predict(dsan: str, args: argparse.Namespace, studies: Path, out: Path) -> tuple[float, int]:
    command = [dsan, "predict", "--profile", args.profile, "--data-root", str(args.data_root),
               "--dicom", str(studies), "--out", str(out), "--json"]
    if args.masks:
        command += ["--masks", str(args.masks)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"dsan predict failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
                 f"{done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return seconds, len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--dicom", type=Path, required=True)
    parser.add_argument("--masks", type=Path)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--studies", type=int, default=8)
    args = parser.parse_args()
    dsan = str(Path(sys.executable).parent / "dsan")
    patients = sorted(p for p in args.dicom.iterdir() if p.is_dir())[: args.studies]
    if len(patients) < 2:
        sys.exit(f"expected at least 2 patient folders in {args.dicom}, found {len(patients)}")
    with tempfile.TemporaryDirectory() as work:
        times = {}
        for n in (1, len(patients)):
            studies = Path(work) / f"studies-{n}"
            for patient in patients[:n]:
                shutil.copytree(patient, studies / patient.name)
            times[n] = _predict(dsan, args, studies, Path(work) / f"out-{n}")
    (one, one_rows), (many, many_rows) = times[1], times[len(patients)]
    per_study = (many - one) / max(many_rows - one_rows, 1)
    import torch

    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"cpu, {os.cpu_count()} cores")
    print(json.dumps({"benchmark": "predict", "device": device, "machine": platform.machine(),
                      "load_average_1min": round(os.getloadavg()[0], 2),
                      "patients": len(patients), "studies_predicted": many_rows,
                      "one_patient_s": round(one, 1), "all_patients_s": round(many, 1),
                      "seconds_per_extra_study": round(per_study, 2),
                      "fixed_start_up_s": round(one - per_study, 1),
                      "paper_s_per_scan": 4.6}))


if __name__ == "__main__":
    main()
