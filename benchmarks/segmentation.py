"""VB-Net inference cost per scan: seconds and peak memory, demo and paper sizes.

    .venv/bin/python benchmarks/segmentation.py [--device auto|cpu|cuda] [--sizes demo paper]
        [--threads N] [--window-only] [--amp on|off] [--train-steps N]
        [--overlaps 0.125 0.25]

Random weights (timing does not depend on them). Each size runs in its own
subprocess so its peak RSS is its own; on CUDA the peak allocated memory is
reported too, and `--amp` picks mixed precision (default on, as in VBNetConfig;
it only applies on CUDA). `--train-steps N` also times N training steps (batch of
2 patches, Dice + CE loss, Adam; after 2 warm-up steps) and their peak memory.
`--overlaps A B ...` runs each size at each sliding-window overlap (default: the
size's own, as in its profile) and prints the per-scan ratio of each to the first.
Prints the device, then one line per size (and overlap).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROFILES = Path(__file__).resolve().parents[1] / "profiles"

SIZES = {
    # (z, y, x) input and spacing (x, y, z) mm; the VB-Net is the profile of that name's.
    "demo": ((96, 128, 128), (2.8125, 2.8125, 1.25)),
    "demo-gpu": ((96, 128, 128), (2.8125, 2.8125, 1.25)),
    "paper": ((300, 512, 512), (0.703125, 0.703125, 1.25)),
}


def _train_timing(model: Any, config: Any, device: Any, use_amp: bool,
                  steps: int) -> dict[str, object]:
    import torch

    from dsan_core.segmentation.training import train_step

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, *config.patch_size, generator=generator).to(device)
    labels = torch.randint(0, 3, (2, *config.patch_size), generator=generator).to(device)

    def step() -> None:
        train_step(model, optimizer, scaler, images, labels, use_amp=use_amp)

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result: dict[str, object] = {
        "train_seconds_per_step": round((time.perf_counter() - started) / steps, 4)}
    if device.type == "cuda":
        result["train_cuda_max_allocated_GiB"] = round(
            torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return result


def _run_one(size: str, device_name: str, threads: int | None, window_only: bool, amp: bool,
             train_steps: int = 0, overlap: float | None = None) -> dict[str, object]:
    import numpy as np
    import torch

    from dsan_core.config import load_profile
    from dsan_core.segmentation.inference import _starts, network_shape, segment_volume
    from dsan_core.segmentation.vbnet import build_vbnet

    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    shape, spacing = SIZES[size]
    update: dict[str, object] = {"mixed_precision": amp}
    if overlap is not None:
        update["overlap"] = overlap
    config = load_profile(PROFILES / f"{size}.yaml").segmentation.vbnet.model_copy(
        update=update)
    use_amp = device.type == "cuda" and amp
    torch.manual_seed(0)
    model = build_vbnet(config).to(device)
    hu = np.random.default_rng(0).normal(-600, 400, shape).astype(np.float32)
    grid = network_shape(shape, spacing, config.spacing_mm)
    n_windows = int(np.prod([len(_starts(max(n, p), p, config.overlap))
                             for n, p in zip(grid, config.patch_size, strict=True)]))
    window = torch.zeros(1, 1, *config.patch_size, device=device)
    with torch.no_grad(), torch.autocast(device_type=device.type, enabled=use_amp):
        model.eval()(window)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    with torch.no_grad(), torch.autocast(device_type=device.type, enabled=use_amp):
        model(window)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    per_window = time.perf_counter() - started
    if window_only:
        return {"size": size, "network_grid_zyx": grid, "windows": n_windows,
                "seconds_per_window": round(per_window, 3),
                "estimated_seconds": round(per_window * n_windows, 1)}
    started = time.perf_counter()
    segment_volume(model, hu, spacing, config, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    result: dict[str, object] = {
        "size": size,
        "amp": use_amp,
        "input_zyx": shape,
        "network_grid_zyx": grid,
        "overlap": config.overlap,
        "windows": n_windows,
        "seconds_per_window": round(per_window, 3),
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "seconds": round(seconds, 2),
        "peak_rss_GiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    if device.type == "cuda":
        result["cuda_max_allocated_GiB"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if train_steps:
        result |= _train_timing(model, config, device, use_amp, train_steps)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--window-only", action="store_true",
                        help="time one window and extrapolate (for paper size on a CPU)")
    parser.add_argument("--amp", choices=["on", "off"], default="on",
                        help="mixed precision on CUDA (ignored on CPU)")
    parser.add_argument("--train-steps", type=int, default=0,
                        help="also time this many training steps")
    parser.add_argument("--overlaps", type=float, nargs="+", default=[None],
                        help="sliding-window overlaps to time (ratios to the first)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--overlap", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_run_one(args.one, args.device, args.threads, args.window_only,
                                  args.amp == "on", args.train_steps, args.overlap)))
        return
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = args.threads or torch.get_num_threads()
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({threads} threads)"
    print(f"device: {name}; torch {torch.__version__}")
    for size in args.sizes:
        seconds: list[float] = []
        for overlap in args.overlaps:
            command = [sys.executable, __file__, "--one", size, "--device", device,
                       "--amp", args.amp, "--train-steps", str(args.train_steps)]
            if overlap is not None:
                command += ["--overlap", str(overlap)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            if args.window_only:
                command.append("--window-only")
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{size}: failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            line = done.stdout.strip().splitlines()[-1]
            print(line)
            result = json.loads(line)
            seconds.append(float(result.get("seconds", result.get("estimated_seconds", 0))))
        if len(seconds) == len(args.overlaps) > 1:
            ratios = ", ".join(f"{args.overlaps[i]}: {seconds[i] / seconds[0]:.2f}x"
                               for i in range(1, len(seconds)))
            print(f"{size}: per scan against overlap {args.overlaps[0]}: {ratios}")


if __name__ == "__main__":
    main()
