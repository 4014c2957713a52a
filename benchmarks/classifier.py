"""DSAN classifier cost: training steps through our loop vs the bare model, data loading,
CPU threads, bf16 on the CPU, and (on CUDA) paper-size steps in bf16 vs fp32.

    .venv/bin/python benchmarks/classifier.py [--parts loop loader threads cpu-bf16 gpu]
        [--width 16] [--shape 48 96 96] [--batch 4] [--steps 4] [--device auto|cpu|cuda]
        [--gpu-shape 138 256 256] [--gpu-width 64] [--gpu-batch 20]

Parts (each prints one JSON line; random weights, timing does not depend on them):

    loop     seconds per training step of `train_classifier` (attention branch, cases read
             from float16 .npy memory maps, validation off) against the bare model on the
             same batch already in memory: forward, BCE + lambda L_ex, backward, Adam step
             (and BCE only, to show what the attention loss costs). Goal: loop <= 1.1x bare.
             Also the bare forward+backward seconds per sample.
    loader   DataLoader throughput (scans/s) over paper-size 138x256x256 float16 images +
             uint8 masks, 0 vs 2 workers (the files sit in the page cache: this measures
             reading the memory map, copying and collating, not the disk).
    threads  the 2-core question: one training with 2 torch threads vs two concurrent
             trainings with 1 thread each (bare steps, separate processes), in steps/s.
    cpu-bf16 (always on the CPU) bf16 autocast vs fp32 for the bare step at --width,
             --shape, --batch in channels_last_3d (the demo's layout): seconds per step,
             and whether the bf16 gradients can be trusted: the gradients of one batch
             computed `--bf16-checks` times from the same weights, counting the
             repetitions with non-finite values and those that differ from the first,
             and the worst relative error (norm of the whole gradient) of a finite one
             against fp32's; then the same error for one Conv3d alone (3 seeds) at the
             stem's scale and at the last stages' feature size (1/16 of --shape). The
             CPU's bf16 hardware (AVX512-BF16, AMX) is printed.
    gpu      (CUDA only) `--gpu-shape` at `--gpu-width`, batch `--gpu-batch`: seconds per
             `train_step` and peak GPU memory, bf16 autocast vs fp32, channels_last_3d off
             and on; inference seconds per scan (float16 host volume -> probability).
             `--cudnn-benchmark` turns on cuDNN's algorithm search (worth comparing).

Runs on the machine it is started on and says which; numbers on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dsan_core.classifier import (  # noqa: E402
    ClassifierCase,
    DSANet,
    build_classifier,
    classifier_loss,
    make_loader,
    train_classifier,
    train_step,
)
from dsan_core.classifier.inference import autocast_for, to_network_input  # noqa: E402
from dsan_core.config import TrainConfig  # noqa: E402

GROUPS = [("covid_small", 1), ("covid_large", 1), ("cap_small", 0), ("cap_large", 0)]


def _write_cases(folder: Path, n: int, shape: tuple[int, ...], seed: int = 0
                 ) -> list[ClassifierCase]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        group, label = GROUPS[i % len(GROUPS)]
        image = rng.random(shape, dtype=np.float32).astype(np.float16)
        infection = np.zeros(shape, np.uint8)
        if label:
            infection[tuple(slice(n // 4, n // 2) for n in shape)] = 1
        image_path, mask_path = folder / f"s{i}_image.npy", folder / f"s{i}_infection.npy"
        np.save(image_path, image)
        np.save(mask_path, infection)
        cases.append(ClassifierCase(f"s{i}", label, group,
                                    functools.partial(np.load, image_path, mmap_mode="r"),
                                    functools.partial(np.load, mask_path, mmap_mode="r")))
    return cases


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bare_batch(config: TrainConfig, shape: tuple[int, ...], device: torch.device
                ) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    batch = config.batch_size
    infection = torch.zeros(batch, 1, *shape, dtype=torch.uint8)
    infection[:, :, : shape[0] // 2, : shape[1] // 2, : shape[2] // 2] = 1
    return {"image": torch.rand(batch, 1, *shape, generator=generator).to(device),
            "label": torch.tensor([float(i % 2) for i in range(batch)]).to(device),
            "infection": infection.to(device)}


def _bare_model(config: TrainConfig, device: torch.device) -> DSANet:
    """The model of a bare step: seed 0, train mode, channels_last_3d where configured."""
    torch.manual_seed(0)
    model = build_classifier(config).to(device).train()
    if config.channels_last_3d:
        model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    return model


def _backward(model: DSANet, batch: dict[str, torch.Tensor], config: TrainConfig,
              shape: tuple[int, ...], autocast: torch.autocast, *, attention: bool) -> None:
    """Forward under `autocast`, the loss (BCE, + lambda L_ex with `attention`), backward."""
    model.zero_grad(set_to_none=True)
    with autocast:
        out = model(batch["image"])
    loss, _, _ = classifier_loss(out, batch["label"], batch["infection"], config,
                                 attention=attention, input_size=shape)
    loss.backward()


def _cpu_autocast(bf16: bool) -> torch.autocast:
    # `autocast_for` (the library's) turns bf16 on for CUDA only.
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def _time_bare(config: TrainConfig, shape: tuple[int, ...], device: torch.device, steps: int,
               *, attention: bool, repeats: int = 1, start_at: float | None = None,
               cpu_bf16: bool = False) -> float:
    """Seconds per step (best of `repeats`) of forward + loss + backward + Adam on one
    resident batch; with `start_at`, timing starts at that wall-clock time; with
    `cpu_bf16`, under bf16 autocast on the CPU."""
    model = _bare_model(config, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    batch = _bare_batch(config, shape, device)
    if config.channels_last_3d:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last_3d)

    def step() -> None:
        autocast = (_cpu_autocast(True) if cpu_bf16
                    else autocast_for(device, config.mixed_precision))
        _backward(model, batch, config, shape, autocast, attention=attention)
        optimizer.step()

    step()
    _sync(device)
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        best = min(best, (time.perf_counter() - started) / steps)
    return best


def part_loop(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    shape = tuple(args.shape)
    config = TrainConfig(width=args.width, batch_size=args.batch, epochs=args.repeats + 1,
                         mixed_precision=device.type == "cuda", num_workers=args.num_workers,
                         channels_last_3d=args.channels_last, epoch_selection="last")
    n_cases = args.batch * args.steps
    with tempfile.TemporaryDirectory() as folder:
        cases = _write_cases(Path(folder), n_cases, shape)
        result = train_classifier(cases, config, branch="att_us", seed=0, device=device,
                                  resume=None, on_epoch_end=lambda c, r: None,
                                  log=lambda _: None)
    # Best epoch after the first (warm-up); an epoch's seconds include data loading,
    # the checkpoint copies and the callback.
    loop = min(report.seconds for report in result.history[1:]) / args.steps
    bare = _time_bare(config, shape, device, args.steps, attention=True, repeats=args.repeats)
    bare_bce = _time_bare(config, shape, device, args.steps, attention=False,
                          repeats=args.repeats)
    return {"part": "loop", "width": args.width, "shape_zyx": shape, "batch": args.batch,
            "num_workers": args.num_workers, "channels_last_3d": args.channels_last,
            "steps": args.steps, "best_of": args.repeats,
            "loop_s_per_step": round(loop, 4),
            "bare_s_per_step": round(bare, 4), "overhead_x": round(loop / bare, 3),
            "bare_bce_only_s_per_step": round(bare_bce, 4),
            "attention_loss_cost_x": round(bare / bare_bce, 3),
            "bare_s_per_sample": round(bare / args.batch, 4)}


def part_loader(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    shape = (138, 256, 256)
    out: dict[str, Any] = {"part": "loader", "shape_zyx": shape, "dtype": "float16+uint8"}
    with tempfile.TemporaryDirectory() as folder:
        cases = _write_cases(Path(folder), 8, shape)
        for workers in (0, 2):
            loader = make_loader(cases, batch_size=2, sampler=None, with_infection=True,
                                 num_workers=workers, device=device)
            for _ in loader:  # warm-up: page cache and worker start
                pass
            started = time.perf_counter()
            n = sum(int(batch["label"].shape[0]) for _ in range(3) for batch in loader)
            out[f"scans_per_s_{workers}_workers"] = round(n / (time.perf_counter() - started), 1)
    return out


def _thread_worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.thread_worker)
    config = TrainConfig(width=args.width, batch_size=args.batch, mixed_precision=False)
    seconds = _time_bare(config, tuple(args.shape), torch.device("cpu"), args.steps,
                         attention=True, start_at=args.start_at)
    print(json.dumps({"seconds_per_step": seconds}))


def part_threads(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    # Every process builds its model and warms up, then all start timing at one
    # wall-clock moment, so the two 1-thread trainings really run side by side.
    def run(threads: int, copies: int) -> list[float]:
        start_at = time.time() + 15.0
        command = [sys.executable, __file__, "--thread-worker", str(threads),
                   "--start-at", str(start_at), "--steps", str(args.steps), "--width",
                   str(args.width), "--batch", str(args.batch), "--shape", *map(str, args.shape)]
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                     for _ in range(copies)]
        outputs = [process.communicate()[0] for process in processes]
        return [json.loads(out.strip().splitlines()[-1])["seconds_per_step"] for out in outputs]

    one = run(2, 1)
    two = run(1, 2)
    one_rate, two_rate = 1 / one[0], sum(1 / seconds for seconds in two)
    return {"part": "threads", "width": args.width, "shape_zyx": tuple(args.shape),
            "batch": args.batch, "steps": args.steps,
            "one_training_2_threads_s_per_step": round(one[0], 4),
            "two_trainings_1_thread_s_per_step": [round(seconds, 4) for seconds in two],
            "steps_per_s_one_x2": round(one_rate, 3), "steps_per_s_two_x1": round(two_rate, 3),
            "faster": "two trainings x 1 thread" if two_rate > one_rate
            else "one training x 2 threads"}


def _gpu_step(shape: tuple[int, ...], width: int, batch: int, amp: bool, channels_last: bool,
              steps: int, device: torch.device) -> dict[str, Any]:
    config = TrainConfig(width=width, batch_size=batch, mixed_precision=amp,
                         channels_last_3d=channels_last)
    torch.manual_seed(0)
    model: DSANet = build_classifier(config).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    host = _bare_batch(config, shape, torch.device("cpu"))
    host["image"] = host["image"].half()
    label = f"{'bf16' if amp else 'fp32'}{'+channels_last' if channels_last else ''}"
    try:
        for _ in range(2):
            train_step(model, optimizer, host, config, attention=True, device=device)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        for _ in range(steps):
            train_step(model, optimizer, host, config, attention=True, device=device)
        _sync(device)
        seconds = (time.perf_counter() - started) / steps
    except torch.OutOfMemoryError:
        return {"mode": label, "error": "out of memory"}
    result: dict[str, Any] = {"mode": label, "train_s_per_step": round(seconds, 4)}
    if device.type == "cuda":
        result["train_peak_GiB"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del optimizer
    model.eval()
    volume = torch.rand(1, 1, *shape).half()
    with torch.no_grad():
        for repeat in range(4):  # the first is a warm-up
            if repeat == 1:
                _sync(device)
                started = time.perf_counter()
            x = to_network_input(volume, device, channels_last=channels_last)
            with autocast_for(device, amp):
                float(torch.sigmoid(model(x).logit.float())[0])
    result["inference_s_per_scan"] = round((time.perf_counter() - started) / 3, 4)
    return result


def part_gpu(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    shape = tuple(args.gpu_shape)
    runs = []
    for amp, channels_last in ((True, False), (False, False), (True, True)):
        runs.append(_gpu_step(shape, args.gpu_width, args.gpu_batch, amp, channels_last,
                              args.gpu_steps, device))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"part": "gpu", "shape_zyx": shape, "width": args.gpu_width,
            "batch": args.gpu_batch, "runs": runs}


def _cpu_gradients(model: DSANet, batch: dict[str, torch.Tensor], config: TrainConfig,
                   shape: tuple[int, ...], *, bf16: bool) -> dict[str, torch.Tensor]:
    """The parameter gradients of one forward + BCE + lambda L_ex + backward."""
    _backward(model, batch, config, shape, _cpu_autocast(bf16), attention=True)
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()
            if p.grad is not None}


def _conv_weight_gradient_error(channels: int, size: tuple[int, ...], seed: int) -> float:
    """Relative error of one bf16 Conv3d's weight gradient (3x3x3, channels_last_3d,
    batch 4) against fp32's: bf16 rounding alone gives ~3e-3."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1, bias=False)
    conv = conv.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    x = torch.randn(4, channels, *size).contiguous(memory_format=torch.channels_last_3d)
    target = torch.randn(4, channels, *size)
    gradients = []
    for bf16 in (False, True):
        conv.zero_grad()
        with _cpu_autocast(bf16):
            y = conv(x)
        ((y.float() - target) ** 2).mean().backward()
        gradients.append(conv.weight.grad.double().clone())  # type: ignore[union-attr]
    return float((gradients[1] - gradients[0]).norm() / gradients[0].norm())


def _bf16_gradient_checks(config: TrainConfig, batch: dict[str, torch.Tensor],
                          shape: tuple[int, ...], repeats: int) -> dict[str, Any]:
    model = _bare_model(config, torch.device("cpu"))
    reference = _cpu_gradients(model, batch, config, shape, bf16=False)
    again = _cpu_gradients(model, batch, config, shape, bf16=False)
    runs = [_cpu_gradients(model, batch, config, shape, bf16=True) for _ in range(repeats)]
    finite = [g for g in runs if all(bool(t.isfinite().all()) for t in g.values())]

    def flat(gradients: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([gradients[k].double().flatten() for k in sorted(reference)])

    worst = max((float((flat(g) - flat(reference)).norm() / flat(reference).norm())
                 for g in finite), default=float("nan"))
    return {"fp32_gradients_repeatable": all(torch.equal(again[k], reference[k])
                                             for k in reference),
            "gradient_repeats": repeats,
            "repeats_with_non_finite_gradients": len(runs) - len(finite),
            "repeats_differing_from_the_first": sum(
                any(not torch.equal(g[k], runs[0][k]) for k in g) for g in runs[1:]),
            "worst_relative_error_vs_fp32": float(f"{worst:.3g}")}


def part_cpu_bf16(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    shape = tuple(args.shape)
    config = TrainConfig(width=args.width, batch_size=args.batch, channels_last_3d=True,
                         mixed_precision=False)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    hardware = {name.strip("_").removeprefix("is_").removesuffix("_supported"):
                bool(getattr(torch.cpu, name, lambda: False)()) for name in probes}
    batch = _bare_batch(config, shape, torch.device("cpu"))
    batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last_3d)
    fp32, bf16 = (_time_bare(config, shape, torch.device("cpu"), args.steps, attention=True,
                             repeats=args.repeats, cpu_bf16=bf16) for bf16 in (False, True))
    # One convolution alone: at the stem's scale and at the last stages' feature size.
    large, small = tuple(n // 4 for n in shape), tuple(-(-n // 16) for n in shape)
    layers = {f"{args.width} ch at {'x'.join(map(str, large))}": (args.width, large),
              f"{8 * args.width} ch at {'x'.join(map(str, small))}": (8 * args.width, small)}
    conv_errors = {name: [float(f"{_conv_weight_gradient_error(c, size, seed):.3g}")
                          for seed in range(3)] for name, (c, size) in layers.items()}
    return {"part": "cpu-bf16", "width": args.width, "shape_zyx": shape, "batch": args.batch,
            "cpu_bf16_hardware": hardware, "threads": torch.get_num_threads(),
            "fp32_s_per_step": round(fp32, 4), "bf16_s_per_step": round(bf16, 4),
            "bf16_over_fp32_x": round(bf16 / fp32, 3),
            **_bf16_gradient_checks(config, batch, shape, args.bf16_checks),
            "one_conv3d_weight_gradient_relative_error_vs_fp32": conv_errors}


PARTS = {"loop": part_loop, "loader": part_loader, "threads": part_threads,
         "cpu-bf16": part_cpu_bf16, "gpu": part_gpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--shape", type=int, nargs=3, default=[48, 96, 96])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="loop part: DataLoader workers (TrainConfig.num_workers)")
    parser.add_argument("--channels-last", action="store_true",
                        help="loop part: channels_last_3d (TrainConfig.channels_last_3d)")
    parser.add_argument("--bf16-checks", type=int, default=8,
                        help="cpu-bf16 part: gradient repetitions from the same weights")
    parser.add_argument("--gpu-shape", type=int, nargs=3, default=[138, 256, 256])
    parser.add_argument("--gpu-width", type=int, default=64)
    parser.add_argument("--gpu-batch", type=int, default=20)
    parser.add_argument("--gpu-steps", type=int, default=5)
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True (the library never sets it)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--thread-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.thread_worker:
        _thread_worker(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"cpu ({torch.get_num_threads()} threads)")
    print(f"device: {where}; torch {torch.__version__}; cudnn.benchmark "
          f"{torch.backends.cudnn.benchmark}")
    for part in args.parts:
        if part == "gpu" and device.type != "cuda" and args.gpu_shape == [138, 256, 256]:
            print(json.dumps({"part": "gpu", "skipped": "no CUDA device (pass a small "
                              "--gpu-shape to try the code path on the CPU)"}))
            continue
        # The loop, loader and threads parts are CPU questions unless asked otherwise.
        print(json.dumps(PARTS[part](args, device)), flush=True)


if __name__ == "__main__":
    main()
