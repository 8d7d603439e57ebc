"""float16 / bfloat16 against float64: spike agreement and membrane error (docs/precision.md).

Each network is simulated once in float64 (the reference) and once per low
precision dtype with the same weights and the same Poisson input spikes.
Reported per network, dtype and ``tau/dt``:

* ``agree``: fraction of spike entries ``[t, batch, neuron]`` of the hidden
  population that equal the float64 run's;
* ``matched``: fraction of the float64 run's spikes that the low precision run
  has at the same step, same neuron;
* ``rate_err``: relative error of the hidden population's total spike count;
* ``v_err``: max |v - v64| of a leaky integrator (LI, same tau, no spikes of its
  own) driven by the input, relative to max |v64|: the membrane's integration
  error alone.

Run: ``.venv/bin/python benchmarks/precision_agreement.py`` (about 20 s on 2 cores).
"""

from __future__ import annotations

import argparse
from typing import Callable

import numpy as np
import torch

import ntgraph
from ntgraph import ALIF, LI, LIF, CubaLIF, Graph

DT = 1e-3


def feedforward(model: Callable[[float], object], tau_steps: float, n_in: int = 100, n_hid: int = 200,
                recurrent: bool = False) -> Graph:
    g = Graph("ff", seed=3)
    g.input("x", n_in)
    g.population("h", model(tau_steps * DT), n_hid)
    g.population("m", LI(tau_mem=tau_steps * DT, r=tau_steps), 10)
    # r = tau/dt makes one unit of weight a jump of one threshold (docs/design.md)
    g.dense("x", "h", scale=2.0 / np.sqrt(n_in))
    if recurrent:
        g.dense("h", "h", scale=0.5 / np.sqrt(n_hid))
    g.dense("x", "m", scale=1.0 / np.sqrt(n_in))
    g.output("spikes", "h")
    g.output("v", "m")
    return g


MODELS = {
    "LIF": lambda tau: LIF(tau_mem=tau, r=tau / DT),
    "CubaLIF": lambda tau: CubaLIF(tau_mem=tau, tau_syn=max(tau / 4, DT), r=tau / DT),
    "ALIF": lambda tau: ALIF(tau_mem=tau, tau_adapt=tau, beta=0.2, r=tau / DT),
}


def compare(graph: Graph, x: np.ndarray, dtype: str) -> dict[str, float]:
    ref = ntgraph.simulate(graph, x, dt=DT, dtype="float64")
    low = ntgraph.simulate(graph, x, dt=DT, dtype=dtype)
    s64, s = ref["spikes"], low["spikes"]
    v64, v = ref["v"], low["v"]
    return {
        "agree": float(np.mean(s64 == s)),
        "matched": float((s * s64).sum() / max(s64.sum(), 1.0)),
        "rate_err": float(abs(s.sum() - s64.sum()) / max(s64.sum(), 1.0)),
        "v_err": float(np.max(np.abs(v - v64)) / max(np.max(np.abs(v64)), 1e-12)),
        "rate": float(s64.mean() / DT),
    }


def inputs(steps: int = 200, batch: int = 8, n_in: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((steps, batch, n_in)) < 0.05).astype(np.float32)  # 50 Hz Poisson


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    torch.manual_seed(0)
    x = inputs(args.steps)
    print("| network | tau/dt | dtype | spike agreement | spikes matched | spike-count error | LI v error | rate (Hz) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for recurrent in (False, True):
        for name, model in MODELS.items():
            for tau_steps in (10, 20, 50, 200):
                graph = feedforward(model, tau_steps, recurrent=recurrent)
                for dtype in ("float32", "float16", "bfloat16"):
                    try:
                        r = compare(graph, x, dtype)
                    except ntgraph.ValidationError:
                        print(f"| {name}{' rec' if recurrent else ''} | {tau_steps} | {dtype} | refused | | | | |")
                        continue
                    print(f"| {name}{' rec' if recurrent else ''} | {tau_steps} | {dtype} | {r['agree']:.4f} | {r['matched']:.3f} | "
                          f"{r['rate_err']:.3f} | {r['v_err']:.3f} | {r['rate']:.1f} |")


if __name__ == "__main__":
    main()
