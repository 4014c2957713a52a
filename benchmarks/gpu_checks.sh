#!/usr/bin/env bash
# Every CUDA check and GPU benchmark in one go, for a short lease on a GPU machine:
#
#     OUT=gpu-out PYTHON=python3 [PARTS="tests classifier segmentation cohort"] \
#         [DATA_ROOT=dir] bash benchmarks/gpu_checks.sh
#
# 1. the device and versions;  2. the CUDA tests (bf16 classifier training step and
# checkpoint round trip, VB-Net mixed-precision training and inference, device
# resolution);  3. benchmarks/classifier.py at the paper's 138x256x256 (ResNet34
# width 64, batch 20: bf16 vs fp32 vs bf16 + channels_last_3d; then our training loop
# vs the bare step at batch 4; then the host CPU's bf16 check);  4.
# benchmarks/segmentation.py (VB-Net inference and training steps, demo and paper
# sizes);  5. "cohort", only with DATA_ROOT (a data root
# of the demo cohort after pre-processing, e.g. copied from a `make demo` on a CPU
# machine): benchmarks/classifier_cohort.py with the demo-gpu profile's classifier,
# seeds 0-4 (its goal, AUC >= 0.85, is on a GPU), then the demo profile's in fp32 over
# seeds 0-2 (TF32 convolutions, so not bit-equal to the CPU). Its limits are estimates
# for the 90-patient demo cohort: the 60-patient one took 31-45 s per branch on an H200
# at width 32, batch 8, 20 epochs; the profile now trains 5 epochs at batch 4 on ~1.5x
# the scans. They add up to 9 minutes.  Each step has its own time
# limit, so one that hangs does not take the others' time; everything goes to
# $OUT/*.txt and $OUT/*.jsonl.  PARTS picks the steps (default: all).
# The GPU image has torch, numpy, pandas, pyarrow, scikit-learn and PyYAML but (seen
# 2026-12-04) not pydantic or SimpleITK: carry their wheels (the device tool's README).
set -u
OUT=${OUT:-gpu-out}
PY=${PYTHON:-python3}
PARTS=${PARTS:-tests classifier segmentation cohort}
want() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 DO_NOT_TRACK=1
cd "$(dirname "$0")/.."

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch',
torch.__version__, '| cuda', torch.version.cuda, '| cudnn', torch.backends.cudnn.version(),
'|', torch.cuda.get_device_name(0))"
    nproc
} 2>&1 | tee "$OUT/device.txt"

if want tests; then
    echo "== CUDA tests" | tee "$OUT/tests.txt"
    # Separate runs: a module that cannot be collected there (dsan_core.segmentation
    # imports SimpleITK, which the GPU image may lack) must not hide the others.
    timeout 100 "$PY" -m pytest -q -p no:cacheprovider -rs -k "cuda or gpu" \
        tests/dsan_core/classifier tests/dsan_core/test_config.py 2>&1 | tee -a "$OUT/tests.txt"
    if "$PY" -c "import SimpleITK" 2>/dev/null; then
        timeout 100 "$PY" -m pytest -q -p no:cacheprovider -rs -k "cuda or gpu" \
            tests/dsan_core/segmentation/test_training.py 2>&1 | tee -a "$OUT/tests.txt"
    else
        echo "segmentation CUDA tests not run: no SimpleITK here (carry its wheel)" \
            | tee -a "$OUT/tests.txt"
    fi
fi

if want classifier; then
    echo "== classifier, paper size" | tee "$OUT/classifier.txt"
    timeout 200 "$PY" benchmarks/classifier.py --parts gpu --device cuda --gpu-steps 4 \
        2>&1 | tee -a "$OUT/classifier.txt"
    timeout 100 "$PY" benchmarks/classifier.py --parts loop --device cuda --width 64 \
        --shape 138 256 256 --batch 4 --steps 4 --repeats 2 2>&1 | tee -a "$OUT/classifier.txt"
    # The host CPU's bf16 (broken for small Conv3d inputs on the 2-core AVX512-BF16 EPYC).
    timeout 60 "$PY" benchmarks/classifier.py --parts cpu-bf16 --width 24 \
        --shape 24 128 128 --steps 2 --repeats 1 2>&1 | tee -a "$OUT/classifier.txt"
fi

if want segmentation; then
    echo "== segmentation" | tee "$OUT/segmentation.txt"
    timeout 100 "$PY" benchmarks/segmentation.py --device cuda --train-steps 4 \
        2>&1 | tee -a "$OUT/segmentation.txt"
fi

if want cohort && [ -n "${DATA_ROOT:-}" ]; then
    cohort() {  # seconds, then benchmarks/classifier_cohort.py's arguments
        local limit=$1; shift
        timeout "$limit" "$PY" benchmarks/classifier_cohort.py --data-root "$DATA_ROOT" \
            --device cuda "$@" 2>&1 | tee -a "$OUT/cohort.txt"
    }
    echo "== demo cohort: the demo-gpu profile's classifier" | tee "$OUT/cohort.txt"
    cohort 150 --profile profiles/demo-gpu.yaml --seeds 0 \
        --branches att_us att_ss rn34_us --json "$OUT/demo_gpu.jsonl"
    cohort 240 --profile profiles/demo-gpu.yaml --seeds 1 2 3 4 --json "$OUT/demo_gpu.jsonl"
    echo "== demo cohort: the demo profile's classifier, fp32" | tee -a "$OUT/cohort.txt"
    cohort 150 --profile profiles/demo.yaml --fp32 --seeds 0 1 2 \
        --json "$OUT/demo_fp32.jsonl"
fi
nvidia-smi --query-gpu=name,temperature.gpu,clocks.sm --format=csv | tee -a "$OUT/device.txt"
