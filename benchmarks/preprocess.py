"""Benchmark: one 512 x 512 x 300 CT -> 138 x 256 x 256 network input, side by side.

Columns: dsan (`resample_image` + window, and with the lung mask + float16), the
naive two-resample SimpleITK chain (`resample_two_step`, without anti-aliasing;
with --slow also with its Gaussian, i.e. the definition), TorchIO (tio.Resample +
tio.CropOrPad + Clamp + RescaleIntensity; with --slow also with antialias=True),
MONAI (Spacing + ResizeWithPadOrCrop + ScaleIntensityRange; no anti-aliasing).
TorchIO and MONAI are optional (the `bench` extra): a missing one is reported and
its column skipped. The phantom is built with numpy, nothing is downloaded.

    python benchmarks/preprocess.py [--threads 1] [--repeats 3] [--slow]

Times are the best of `repeats` runs after one warm-up (time.perf_counter).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsan_core.config import PreprocessConfig  # noqa: E402
from dsan_core.preprocessing import (  # noqa: E402
    AIR_HU,
    GridGeometry,
    final_grid,
    resample_image,
    resample_mask,
    resample_two_step,
    window_normalise,
)
from dsan_core.preprocessing.intensity import (  # noqa: E402
    mask_outside_lung_,
    window_bounds,
    window_normalise_,
)

SHAPE = (300, 512, 512)  # (z, y, x)
SPACING = (0.68, 0.68, 1.0)  # (x, y, z) mm
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
Rows = list[tuple[str, float | None, str]]


def build_phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A chest-like int16 HU volume (body, two lungs, vessels, noise) and its lung mask."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    hu = np.full(SHAPE, -1000, dtype=np.int16)
    body = ((y - 256) / 200.0) ** 2 + ((x - 256) / 240.0) ** 2 < 1.0
    hu[np.broadcast_to(body, SHAPE)] = 40
    lung = ((((y - 250) / 150.0) ** 2 + ((np.abs(x - 256) - 110) / 80.0) ** 2 < 1.0)
            & (z > 20) & (z < 280))
    hu[lung] = -850
    hu[lung & ((x % 23 == 0) | (y % 29 == 0))] = 40  # thin "vessels"
    hu += rng.integers(-25, 25, size=SHAPE, dtype=np.int16)
    return hu, lung.astype(np.uint8)


def best_of(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    result = run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description="pre-processing benchmark")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for torch and SimpleITK, all columns (default 1, "
                             "as in one Dask worker per core)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", action="store_true",
                        help="also time the slow anti-aliased SimpleITK and TorchIO chains")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    config = PreprocessConfig()
    hu, lung = build_phantom()
    geometry = final_grid((SHAPE[2], SHAPE[1], SHAPE[0]), SPACING, (0.0, 0.0, 0.0), IDENTITY,
                          config)
    width, level = config.window_width, config.window_level
    print(f"input {SHAPE} (z, y, x) int16, spacing {SPACING} mm (x, y, z) -> "
          f"{config.target_shape}, scale {geometry.scale_factor}, final spacing "
          f"{tuple(round(s, 4) for s in geometry.final_spacing)} mm")
    print(f"device: cpu (torch {torch.__version__}); threads: torch {torch.get_num_threads()}, "
          f"SimpleITK {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}; "
          f"best of {args.repeats} after one warm-up")

    def ours() -> np.ndarray:
        image = resample_image(hu, geometry, pad=AIR_HU, antialias=True)
        return window_normalise_(image, width, level).numpy()

    def ours_full() -> np.ndarray:
        image = resample_image(hu, geometry, pad=AIR_HU, antialias=True)
        window_normalise_(image, width, level)
        return mask_outside_lung_(image, resample_mask(lung, geometry)).numpy().astype(np.float16)

    def naive(antialias: bool) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            image = resample_two_step(hu, geometry, pad=AIR_HU, antialias=antialias)
            return window_normalise(image, width, level)
        return run

    rows: Rows = []
    t_ours, ours_out = best_of(ours, args.repeats)
    rows.append(("dsan single step, anti-aliased", t_ours, "CT, windowed"))
    t_full, _ = best_of(ours_full, args.repeats)
    rows.append(("dsan + lung mask + float16", t_full, "the network input"))
    t_naive, naive_out = best_of(naive(False), 1)
    rows.append(("SimpleITK two resamples, no AA", t_naive,
                 f"max |dsan - it| = {np.abs(ours_out - naive_out).max():.3f} (window units)"))
    if args.slow:
        t_ref, reference = best_of(naive(True), 1)
        rows.append(("SimpleITK two resamples + Gaussian", t_ref,
                     f"the definition; max |dsan - it| = "
                     f"{np.abs(ours_out - reference).max():.4f}"))
    t_tio = _torchio(hu, config, geometry, args.repeats, rows, antialias=False)
    if args.slow:
        _torchio(hu, config, geometry, 1, rows, antialias=True)
    _monai(hu, config, geometry, args.repeats, rows)

    print(f"\n{'chain':38s} {'seconds':>8s}  note")
    for name, seconds, note in rows:
        shown = f"{seconds:8.3f}" if seconds is not None else f"{'skipped':>8s}"
        print(f"{name:38s} {shown}  {note}")
    print()
    if t_tio is not None:
        print(f"dsan / TorchIO (no AA) = {t_ours / t_tio:.3f} (goal <= 0.1); "
              f"with lung mask + float16: {t_full / t_tio:.3f}")
    print(f"dsan / naive SimpleITK = {t_ours / t_naive:.3f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peak RSS of this process (all columns): {peak:.0f} MiB")


def _torchio(hu: np.ndarray, config: PreprocessConfig, geometry: GridGeometry, repeats: int,
             rows: Rows, *, antialias: bool) -> float | None:
    name = "TorchIO" + (" + antialias" if antialias else "")
    try:
        import torchio as tio
    except ImportError:
        rows.append((name, None, "torchio not installed: pip install torchio"))
        return None
    low, high = window_bounds(config.window_width, config.window_level)
    affine = np.diag([*SPACING, 1.0])
    tensor = torch.from_numpy(np.ascontiguousarray(hu.transpose(2, 1, 0)))[None]
    transform = tio.Compose([
        tio.Resample(geometry.final_spacing, antialias=antialias),
        tio.CropOrPad(tuple(reversed(config.target_shape))),
        tio.Clamp(low, high),
        tio.RescaleIntensity((0, 1), in_min_max=(low, high)),
    ])

    def run() -> torch.Tensor:
        subject = tio.Subject(ct=tio.ScalarImage(tensor=tensor, affine=affine))
        return transform(subject)["ct"].data

    seconds, _ = best_of(run, repeats)
    rows.append((name, seconds, "one Resample straight to the final spacing"))
    return seconds


def _monai(hu: np.ndarray, config: PreprocessConfig, geometry: GridGeometry, repeats: int,
           rows: Rows) -> None:
    try:
        from monai.data import MetaTensor
        from monai.transforms import Compose, ResizeWithPadOrCrop, ScaleIntensityRange, Spacing
    except ImportError:
        rows.append(("MONAI", None, "monai not installed: pip install monai"))
        return
    low, high = window_bounds(config.window_width, config.window_level)
    affine = torch.diag(torch.tensor([*SPACING, 1.0], dtype=torch.float64))
    data = torch.from_numpy(np.ascontiguousarray(hu.transpose(2, 1, 0)))[None].float()
    transform = Compose([
        Spacing(pixdim=geometry.final_spacing, mode="bilinear", dtype=np.float32),
        ResizeWithPadOrCrop(tuple(reversed(config.target_shape))),
        ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
    ])

    def run() -> Any:
        return transform(MetaTensor(data, affine=affine))

    seconds, _ = best_of(run, repeats)
    rows.append(("MONAI", seconds, "Spacing (no AA) straight to the final spacing"))


if __name__ == "__main__":
    main()
