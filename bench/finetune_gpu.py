"""Updater fine-tuning throughput beside a plain PyTorch training loop, same shapes.

    python bench/finetune_gpu.py [--window 64] [--channels 38] [--batch 4096]
                                 [--buffer 100000] [--cpu-round]

For the default LSTM (fp32) and Transformer (bf16 autocast) autoencoders:

* plain loop: random windows already on the device, random batches, Adam, MSE;
* updater: :func:`streamae.updater.finetune.fine_tune` on a replay buffer of the same
  windows held in host memory (moved to the device once per round, as in production),
  with its per-layer parameter groups and held-out early-stopping evaluation;
* one full update round (``--buffer`` windows, 3 epochs) wall time, on this device and,
  with ``--cpu-round``, on the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from streamae.config import load_config
from streamae.models.detector import untrained_detector
from streamae.models.registry import build_model
from streamae.models.train import pick_device
from streamae.updater.finetune import fine_tune


def plain_loop(model: torch.nn.Module, data: torch.Tensor, batch: int, steps: int,
               bf16: bool) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        idx = torch.randint(0, len(data), (batch,), device=data.device)
        x = data[idx]
        with torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(x, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    _sync(data.device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(data.device)
    return steps * batch / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--channels", type=int, default=38)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--buffer", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cpu-round", action="store_true")
    args = parser.parse_args()
    device = pick_device("auto")
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, "
          f"torch {torch.__version__}, W={args.window}, C={args.channels}, batch {args.batch}")
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((args.buffer, args.window, args.channels)).astype(np.float32)
    on_device = torch.from_numpy(windows).to(device)
    for kind in ("ensemble", "lstm", "transformer"):
        config = load_config(overrides={"model": {"kind": kind}, "window.size": args.window})
        bf16 = device.type == "cuda" and kind == "transformer"
        torch.manual_seed(0)
        model = build_model(config.model, args.window, args.channels).to(device)
        plain = plain_loop(model, on_device, args.batch, args.steps, bf16)
        detector = untrained_detector(config, args.channels, args.window)
        cfg = dataclasses.replace(config.updater.finetune, batch_size=args.batch, epochs=3,
                                  time_budget=600.0, device=device.type)
        # no held-out split here: measure the training steps and the data movement only
        _, report = fine_tune(detector, windows, cfg, val_fraction=0.0)
        print(f"\n{kind} ({'bf16' if bf16 else 'fp32'}):")
        print(f"  plain PyTorch loop      {plain:12,.0f} windows/s")
        print(f"  updater fine_tune       {report.windows_per_s:12,.0f} windows/s "
              f"({report.windows_per_s / plain:.0%} of plain)")
        start = time.perf_counter()
        _, full = fine_tune(detector, windows, dataclasses.replace(cfg, batch_size=256),
                            val_fraction=0.1)
        print(f"  update round, {args.buffer:,} windows, 3 epochs, batch 256, with held-out "
              f"early stopping: {time.perf_counter() - start:6.1f} s on {device.type} "
              f"({full.epochs} epochs, {full.stopped})")
        if args.cpu_round and device.type == "cuda":
            start = time.perf_counter()
            _, cpu = fine_tune(detector, windows, dataclasses.replace(cfg, batch_size=256,
                                                                       device="cpu"),
                               val_fraction=0.1)
            print(f"  the same round on CPU ({torch.get_num_threads()} threads): "
                  f"{time.perf_counter() - start:6.1f} s ({cpu.epochs} epochs, {cpu.stopped})")


if __name__ == "__main__":
    main()
