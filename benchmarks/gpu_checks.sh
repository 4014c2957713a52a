#!/usr/bin/env bash
# Every CUDA check and GPU benchmark in one go, for a short lease on a GPU machine:
#
#     OUT=gpu-out PYTHON=python3 bash benchmarks/gpu_checks.sh
#
# 1. the device and versions;  2. the CUDA tests (bf16 classifier training step and
# checkpoint round trip, VB-Net mixed-precision training and inference, device
# resolution);  3. benchmarks/classifier.py at the paper's 138x256x256 (ResNet34
# width 64, batch 20: bf16 vs fp32 vs bf16 + channels_last_3d; then our training loop
# vs the bare step at batch 4);  4. benchmarks/segmentation.py (VB-Net inference and
# training steps, demo and paper sizes).  Each step has its own time limit, so one that
# hangs does not take the others' time; everything goes to $OUT/*.txt.
set -u
OUT=${OUT:-gpu-out}
PY=${PYTHON:-python3}
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

echo "== CUDA tests" | tee "$OUT/tests.txt"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -k "cuda or gpu" \
    tests/dsan_core/classifier tests/dsan_core/segmentation/test_training.py \
    tests/dsan_core/test_config.py 2>&1 | tee -a "$OUT/tests.txt"

echo "== classifier, paper size" | tee "$OUT/classifier.txt"
timeout 200 "$PY" benchmarks/classifier.py --parts gpu --device cuda --gpu-steps 4 \
    2>&1 | tee -a "$OUT/classifier.txt"
timeout 100 "$PY" benchmarks/classifier.py --parts loop --device cuda --width 64 \
    --shape 138 256 256 --batch 4 --steps 4 --repeats 2 2>&1 | tee -a "$OUT/classifier.txt"

echo "== segmentation" | tee "$OUT/segmentation.txt"
timeout 100 "$PY" benchmarks/segmentation.py --device cuda --train-steps 4 \
    2>&1 | tee -a "$OUT/segmentation.txt"
nvidia-smi --query-gpu=name,temperature.gpu,clocks.sm --format=csv | tee -a "$OUT/device.txt"
