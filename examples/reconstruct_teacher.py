"""Reconstruct the activity of a chaotic rate network ("teacher") with a spiking and a Wilson-Cowan student.

The teacher (ntgraph.data.chaotic_teacher) is a random rate network
``tau dx/dt = -x + J tanh(x)``; its rates ``(1 + tanh x)/2`` of N = 50 units are
the "recorded activity".  Time is split 60/20/20 into train, validation and
held-out test; each split is cut into windows of 20 steps.  A student starts
each window from the recorded activity one step before it and runs freely,
driven only by its own state; it is trained by BPTT to reproduce the window.

* Wilson-Cowan student: N units, recurrent weights under Dale's law (80% E),
  learnable tau and mu; its rates are the prediction.
* Spiking student: 200 recurrent LIF neurons under Dale's law and an LI readout
  of N units whose voltage is the prediction; the readout feeds back into the
  spiking layer (delay 1), so the loop is closed through the network's own state.

Score: PVar = 1 - MSE/Var(target) (variance over time and units, per window,
averaged over windows; ``backends.torchsim.learning.pvar``) on the held-out windows.

Run:  .venv/bin/python examples/reconstruct_teacher.py [--iterations 300] [--model both|wc|snn]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import ntgraph as ntg
from backends.torchsim import learning as L
from ntgraph.data import chaotic_teacher

DT = 1e-3
N_UNITS = 50
WINDOW = 20


def wilson_cowan_student(n: int, seed: int) -> tuple[ntg.Graph, str]:
    g = ntg.Graph("wc-student", seed=seed)
    g.input("none", 1)
    g.population("units", ntg.WilsonCowan(tau=20e-3, mu=0.0, r=0.0), n, excitatory=0.8, learnable=("tau", "mu"))
    g.dense("units", "units", scale=0.5 / np.sqrt(n), bias=np.zeros(n))  # recurrent: delay 1
    g.output("y", "units")
    return g, "units"


def spiking_student(n: int, seed: int, n_hidden: int = 200) -> tuple[ntg.Graph, str]:
    g = ntg.Graph("snn-student", seed=seed)
    g.input("none", 1)
    tau = np.random.default_rng(seed).uniform(5e-3, 20e-3, n_hidden)
    g.population("spiking", ntg.LIF(tau_mem=tau, reset="subtract"), n_hidden, excitatory=0.8)
    g.population("readout", ntg.LI(tau_mem=5e-3), n)
    g.dense("readout", "spiking", scale=3.0, bias=np.full(n_hidden, 0.5))  # closes the loop: delay 1
    g.dense("spiking", "spiking", scale=0.3 / np.sqrt(n_hidden), no_self=True)
    g.dense("spiking", "readout", scale=1.0 / np.sqrt(n_hidden), bias=np.full(n, 0.5))
    g.output("y", "readout")
    return g, "readout"


def free_run(model: torch.nn.Module, state_pop: str, part) -> tuple[torch.Tensor, torch.Tensor]:
    """Run every window from the recorded activity one step before it; returns (prediction, target) [W, B, N]."""
    dtype = next(model.parameters()).dtype
    target = torch.as_tensor(part.y, dtype=dtype).transpose(0, 1)
    start = torch.as_tensor(part.x[:, 0, :], dtype=dtype)  # the activity one step before each window
    state = model.initial_state(target.shape[1], target)
    state.neurons[state_pop] = (start,)
    state.history[state_pop] = [start]
    silent = torch.zeros(target.shape[0], target.shape[1], 1, dtype=dtype)
    return model(silent, state=state)["y"], target


def run(kind: str, iterations: int, seed: int = 0, progress: bool = True) -> dict:
    torch.manual_seed(seed)
    teacher = chaotic_teacher(n_units=N_UNITS, steps=3000, window=WINDOW, seed=seed, dt=DT)
    graph, state_pop = (wilson_cowan_student if kind == "wc" else spiking_student)(N_UNITS, seed)
    model = ntg.compile(graph, "torch", dt=DT)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2 if kind == "wc" else 3e-3)
    train, val, test = teacher.splits
    best = (-np.inf, None)
    for it in range(iterations):
        optimizer.zero_grad()
        prediction, target = free_run(model, state_pop, train)
        loss = torch.mean((prediction - target) ** 2)
        loss.backward()
        optimizer.step()
        if it % 25 == 0 or it == iterations - 1:
            with torch.no_grad():
                score = float(L.pvar(*free_run(model, state_pop, val)))
            if score > best[0]:
                best = (score, {k: v.clone() for k, v in model.state_dict().items()})
            if progress:
                print(f"{kind} iteration {it}: train loss {loss.item():.5f}, validation PVar {score:.4f}")
    model.load_state_dict(best[1])
    with torch.no_grad():
        test_pvar = float(L.pvar(*free_run(model, state_pop, test)))
    ntg.validate(model.to_graph())  # Dale's law holds in the trained IR
    return {"model": kind, "seed": seed, "iterations": iterations, "val_pvar": best[0], "test_pvar": test_pvar}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--model", choices=("wc", "snn", "both"), default="both")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    kinds = ("wc", "snn") if args.model == "both" else (args.model,)
    results = [run(k, args.iterations) for k in kinds]
    for r in results:
        print(f"{r['model']}: held-out PVar {r['test_pvar']:.4f}")
    if args.json:
        with ntg.atomic_write(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
