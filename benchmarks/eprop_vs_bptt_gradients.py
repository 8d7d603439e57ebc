"""How closely e-prop's gradients follow BPTT's, with and without recurrence.

For a LIF, ALIF or Wilson-Cowan hidden layer with an LI readout, computes the gradient of a
per-step MSE loss by BPTT (autograd) and by e-prop (symmetric feedback) on the
same batch, and prints the cosine similarity per projection, averaged over
seeds, as a markdown table (and JSON with --json PATH).

Run:  .venv/bin/python benchmarks/eprop_vs_bptt_gradients.py [--seeds 5] [--kinds LIF,ALIF,WilsonCowan] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import ntgraph as ntg
from backends.torchsim.learning.algorithms import BPTT
from backends.torchsim.learning.eprop import EProp


class PerStepMSE:
    output = "y"

    def __call__(self, y, target):
        return ((y - target) ** 2).sum() / y.shape[0]

    def step_loss(self, y_t, target, t, steps):
        return ((y_t - target[t]) ** 2).sum() / steps


def build(kind: str, recurrent_scale: float, seed: int) -> ntg.Graph:
    g = ntg.Graph("probe", seed=seed)
    g.input("x", 20)
    model = {"LIF": lambda: ntg.LIF(tau_mem=20e-3, v_th=0.5, reset="subtract"),
             "ALIF": lambda: ntg.ALIF(tau_mem=20e-3, tau_adapt=200e-3, beta=0.2, v_th=0.5),
             "WilsonCowan": lambda: ntg.WilsonCowan(tau=20e-3, mu=1.0, r=0.2)}[kind]()
    g.population("h", model, 64, excitatory=0.8)
    g.dense("x", "h", scale=0.6)
    if recurrent_scale > 0:
        g.dense("h", "h", scale=recurrent_scale, no_self=True)
    g.population("o", ntg.LI(tau_mem=20e-3), 4)
    g.dense("h", "o", scale=0.3)
    g.output("y", "o")
    return g


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def measure(kind: str, recurrent_scale: float, seeds: int) -> dict[str, float]:
    sims: dict[str, list[float]] = {}
    for seed in range(seeds):
        g = build(kind, recurrent_scale, seed)
        gen = torch.Generator().manual_seed(seed)
        x = (torch.rand(100, 8, 20, generator=gen) < 0.05).double()
        target = torch.randn(100, 8, 4, generator=gen, dtype=torch.float64) * 0.1
        grads = []
        for algo in (BPTT(), EProp()):
            model = ntg.compile(g, "torch", dt=1e-3, dtype=torch.float64)
            if isinstance(algo, EProp):
                algo.compute_gradients(model, x, target, PerStepMSE())
            else:
                algo.train_step(model, x, target, PerStepMSE(), None)
            grads.append({n: p.grad for n, p in model.named_parameters()})
        for name in grads[0]:
            sims.setdefault(name.split(".")[1], []).append(cosine(grads[0][name], grads[1][name]))
    return {k: float(np.mean(v)) for k, v in sims.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--kinds", default="LIF,ALIF,WilsonCowan", help="hidden models, comma-separated")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for kind in args.kinds.split(","):
        for scale in (0.0, 0.3, 1.0, 3.0):
            rows.append({"hidden": kind, "recurrent_weight_std": scale, **measure(kind, scale, args.seeds)})
    cols = ["x->h", "h->h", "h->o"]
    print("| hidden | recurrent weight std | " + " | ".join(f"cos {c}" for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r['hidden']} | {r['recurrent_weight_std']} | "
              + " | ".join(f"{r[c]:.4f}" if c in r else "-" for c in cols) + " |")
    if args.json:
        from ntgraph._atomic import atomic_write

        with atomic_write(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
