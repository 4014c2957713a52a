#!/usr/bin/env bash
# A whole run on a GPU machine without network, in one command (about 9 minutes at most):
#
#     OUT=$OUT bash benchmarks/gpu_pipeline.sh        # the device tool: carry ["wheels"]
#
# (a) install: a venv on top of the machine's python3 (the GPU image's holds torch
#     2.11.0+cu130, numpy, pandas, pyarrow, scipy, scikit-learn, matplotlib), then dsan and
#     its other dependencies offline from wheels/ (benchmarks/build_wheels.sh builds it
#     here: one wheels.tar.xz, ~55 MiB; plain *.whl files there work too). The image's
#     python3 is itself a venv (/opt/torch/.venv), and a venv made from a venv sees only
#     the interpreter's own site-packages, so its site-packages are added by a .pth file,
#     after the new venv's own. dsan runs from this working tree (PYTHONPATH), the wheel
#     providing the `dsan` command and the dependencies.
# (b) run: `dsan synth` + `dsan run --profile demo-gpu` end to end (VB-Net trained on the
#     GPU, every stage to the evaluation), under `timeout`; then
#     benchmarks/gpu_pipeline_report.py: wall seconds per stage, the VB-Net's held-out
#     Dice, the classifier's pooled and nested TV AUC (and test AUC), and network
#     inference seconds per scan.
#
# Settings (environment): OUT (logs and JSON; default gpu-pipeline-out), WHEELS (wheels),
# BASE_PYTHON (python3), WORK (/tmp/dsan-gpu: venv, cohort, data root), PROFILE
# (profiles/demo-gpu.yaml), LIMIT (570: seconds for everything), STEPS ("install run";
# "install smoke" checks the install on a CPU machine: dsan --help, a tiny synth and its
# ingestion, which starts the embedded Prefect server and a Dask cluster).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-gpu-pipeline-out}
WHEELS=${WHEELS:-wheels}
BASE_PYTHON=${BASE_PYTHON:-python3}
WORK=${WORK:-/tmp/dsan-gpu}
PROFILE=${PROFILE:-profiles/demo-gpu.yaml}
LIMIT=${LIMIT:-570}
STEPS=${STEPS:-install run}
export PYTHONUNBUFFERED=1 DO_NOT_TRACK=1 COLUMNS=140
deadline=$((SECONDS + LIMIT))
left() { echo $((deadline - SECONDS)); }
want() { [[ " $STEPS " == *" $1 "* ]]; }
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
VENV=$WORK/venv
DSAN=("$VENV/bin/python" -c "from flows.cli import main; main()")

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null \
        || echo "no nvidia-smi"
    "$BASE_PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], sys.prefix,
'| torch', torch.__version__, '| cuda', torch.version.cuda, torch.cuda.is_available())"
    echo "cores $(nproc)"
} 2>&1 | tee "$OUT/device.txt"

install() {
    local started=$SECONDS found="$WORK/wheels"
    rm -rf "$VENV" "$found" && mkdir -p "$found"
    if [ -f "$WHEELS/wheels.tar.xz" ]; then
        tar -xJf "$WHEELS/wheels.tar.xz" -C "$found" --strip-components=1 || return 1
    else
        cp "$WHEELS"/*.whl "$found"/ || return 1
    fi
    "$BASE_PYTHON" -m venv --system-site-packages "$VENV" || return 1
    local base_site venv_site
    base_site=$("$BASE_PYTHON" -c "import site; print('\n'.join(site.getsitepackages()))")
    venv_site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "$base_site" > "$venv_site/zz_base_python.pth"
    # A 3.11 venv comes with its own old setuptools, which would hide the base's (torch
    # 2.13 requires setuptools >= 77); 3.12 venvs have none.
    "$VENV/bin/python" -m pip uninstall -q -y setuptools >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q --no-index --no-cache-dir --find-links "$found" dsan \
        || return 1
    "$VENV/bin/python" -m pip check || true  # conflicts with the image's other packages
    "$VENV/bin/python" -c "import torch, SimpleITK, prefect, distributed, pydicom, pandas
print('installed: torch', torch.__version__, '| SimpleITK', SimpleITK.Version_VersionString(),
      '| prefect', prefect.__version__, '| pandas', pandas.__version__)"
    echo "install: $((SECONDS - started)) s"
}

if want install; then
    echo "== install" | tee "$OUT/install.txt"
    install 2>&1 | tee -a "$OUT/install.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "install failed" | tee -a "$OUT/install.txt"; exit 1; }
fi

if want smoke; then
    echo "== smoke" | tee "$OUT/smoke.txt"
    rm -rf "$WORK/smoke" "$WORK/smoke-data"
    {
        PYTHONPATH=$REPO "$VENV/bin/dsan" --help > "$WORK/help.txt" && head -4 "$WORK/help.txt" &&
        printf 'synth: {n_patients: 2, matrix: 32, n_slices: 16, include_broken: false}\n' \
            > "$WORK/smoke.yaml" &&
        PYTHONPATH=$REPO "${DSAN[@]}" synth --profile "$WORK/smoke.yaml" --out "$WORK/smoke" \
            --workers 1 | tail -1 &&
        PYTHONPATH=$REPO "${DSAN[@]}" run --profile test --until ingest \
            --dicom-root "$WORK/smoke/dicom" --labels "$WORK/smoke/labels.csv" \
            --data-root "$WORK/smoke-data" | grep -E "^\[ingest\]" &&
        echo "smoke: ok"
    } 2>&1 | tee -a "$OUT/smoke.txt"
fi

if want run; then
    echo "== synth ($PROFILE)" | tee "$OUT/run.txt"
    rm -rf "$WORK/cohort" "$WORK/data"
    started=$SECONDS
    PYTHONPATH=$REPO timeout "$(left)" "${DSAN[@]}" synth --profile "$PROFILE" \
        --out "$WORK/cohort" --workers "$(nproc)" 2>&1 | tail -4 | tee -a "$OUT/run.txt"
    echo "synth: $((SECONDS - started)) s" | tee -a "$OUT/run.txt"
    # Keep ~60 s for the report after the run, whatever happens to it.
    echo "== dsan run ($PROFILE), at most $(( $(left) - 60 )) s" | tee -a "$OUT/run.txt"
    started=$SECONDS
    PYTHONPATH=$REPO timeout "$(( $(left) - 60 ))" "${DSAN[@]}" run --profile "$PROFILE" \
        --dicom-root "$WORK/cohort/dicom" --labels "$WORK/cohort/labels.csv" \
        --masks "$WORK/cohort/masks" --data-root "$WORK/data" 2>&1 | tee -a "$OUT/run.txt" \
        | grep -v " | " | tail -60
    echo "dsan run: exit ${PIPESTATUS[0]} after $((SECONDS - started)) s" | tee -a "$OUT/run.txt"
    echo "== report" | tee "$OUT/report.txt"
    PYTHONPATH=$REPO timeout "$(( $(left) > 20 ? $(left) : 20 ))" "$VENV/bin/python" \
        benchmarks/gpu_pipeline_report.py --data-root "$WORK/data" --profile "$PROFILE" \
        --json "$OUT/report.json" 2>&1 | tee -a "$OUT/report.txt"
fi
echo "total: $SECONDS s"
