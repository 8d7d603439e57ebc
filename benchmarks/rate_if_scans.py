"""Interleaved timing of the rate and IF scans (backends/torchsim/scan_rate.py) against the step loop.

Builds each network twice in one process, the layered plan with the scans (``model.fast = True``) and
the step-by-step loop (``model.fast = False``), and times one training step (forward, MSE loss on the
readout, backward) and one ``torch.no_grad`` forward of each in turn, ``--repeats`` rounds after one
warm-up, so both see the same load.  Prints min and median (ms) per row and the median ratio.

Networks (float32): ``wc``: ``in(20) -> WilsonCowan(H) [dense self-projection, delay 1, tau/mu/r
learnable] -> LI(10)``; ``if``: ``in(100, 5% spikes) -> IF(H, r = 1/dt) [dense self-projection, delay 1]
-> LI(10)``.

    .venv/bin/python benchmarks/rate_if_scans.py --nets wc,if --sizes 94,256 --steps 500 --batch 16 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(net: str, H: int, seed: int = 0):
    import numpy as np

    import ntgraph as ntg

    g = ntg.Graph(f"{net}{H}", seed=seed)
    n_in = 20 if net == "wc" else 100
    g.input("x", n_in)
    if net == "wc":
        g.population("h", ntg.WilsonCowan(tau=np.linspace(5e-3, 20e-3, H), mu=0.5, r=0.2), H,
                     learnable=("tau", "mu", "r"))
        g.dense("x", "h", scale=1.0)
        g.dense("h", "h", scale=2.0 / np.sqrt(H), delay=1)
    else:
        g.population("h", ntg.IF(r=1e3, v_th=1.0, reset="subtract"), H)
        g.dense("x", "h", scale=3.0 / np.sqrt(n_in))
        g.dense("h", "h", scale=1.0 / np.sqrt(H), delay=1)
    g.population("o", ntg.LI(tau_mem=10e-3), 10)
    g.dense("h", "o")
    g.output("y", "o")
    return g


def make_step(net: str, H: int, steps: int, batch: int, fast: bool, train: bool) -> Callable[[], None]:
    import torch

    import ntgraph as ntg

    model = ntg.compile(build(net, H), "torch", dt=1e-3, dtype=torch.float32)
    model.fast = fast
    gen = torch.Generator().manual_seed(1)
    n_in = 20 if net == "wc" else 100
    x = torch.rand(steps, batch, n_in, generator=gen)
    x = (x < 0.05).float() if net == "if" else x
    target = torch.randn(steps, batch, 10, generator=gen)
    params = list(model.parameters())

    def step() -> None:
        if train:
            for p in params:
                p.grad = None
            loss = ((model(x)["y"] - target) ** 2).mean()
            loss.backward()
        else:
            with torch.no_grad():
                model(x)

    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="wc,if")
    ap.add_argument("--sizes", default="94,256")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for net in args.nets.split(","):
        for H in (int(h) for h in args.sizes.split(",")):
            for train in (True, False):
                fns = {fast: make_step(net, H, args.steps, args.batch, fast, train) for fast in (True, False)}
                times: dict[bool, list[float]] = {True: [], False: []}
                for fn in fns.values():
                    fn()  # warm-up
                for _ in range(args.repeats):
                    for fast, fn in fns.items():
                        t0 = time.perf_counter()
                        fn()
                        times[fast].append((time.perf_counter() - t0) * 1e3)
                rows.append((net, H, "train" if train else "infer", times[True], times[False]))
                print(f"{net} H={H} {'train' if train else 'infer'} done", file=sys.stderr, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"T={args.steps}, batch={args.batch}, float32, {args.threads} threads, {args.repeats} rounds, "
          f"torch {torch.__version__}, load average at the end {load:.2f}\n")
    print("| net | H | mode | scan min / median ms | step loop min / median ms | speed-up (medians) |")
    print("|---|---:|---|---:|---:|---:|")
    for net, H, mode, fast, slow in rows:
        mf, ms = statistics.median(fast), statistics.median(slow)
        print(f"| {net} | {H} | {mode} | {min(fast):.1f} / {mf:.1f} | {min(slow):.1f} / {ms:.1f} | {ms / mf:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
