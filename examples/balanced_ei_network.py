"""A balanced excitatory/inhibitory spiking network under Dale's law.

Builds the network with the graph API, simulates it on the torch backend and
prints the firing rates of the excitatory and inhibitory neurons, then shows
that the E/I balance at initialisation holds for every postsynaptic neuron.

Run:  .venv/bin/python examples/balanced_ei_network.py [--steps 500]
"""

from __future__ import annotations

import argparse

import numpy as np

import ntgraph as ntg


def build(n: int = 400, seed: int = 1) -> ntg.Graph:
    g = ntg.Graph("balanced-ei", seed=seed)
    g.input("stim", 50, excitatory=1.0)
    tau = np.random.default_rng(seed).uniform(15e-3, 25e-3, n)
    g.population("cortex", ntg.LIF(tau_mem=tau, reset="subtract"), n, excitatory=0.8)
    g.dense("stim", "cortex", p=0.2, scale=4.0)
    g.dense("cortex", "cortex", p=0.2, scale=1.5, no_self=True, balanced=True)
    g.population("readout", ntg.LI(tau_mem=20e-3), 5)
    g.dense("cortex", "readout")
    g.output("spikes", "cortex")
    g.output("y", "readout")
    return g


def main(steps: int = 500) -> dict[str, float]:
    g = build()
    print(g.summary())
    rng = np.random.default_rng(0)
    x = (rng.random((steps, 4, 50)) < 0.04).astype(np.float64)  # 40 Hz Poisson at dt = 1 ms
    out = ntg.simulate(g, x, dt=1e-3)
    sign = g["cortex"].dale.sign
    rates = out["spikes"].mean(axis=(0, 1)) / 1e-3
    w = g["cortex->cortex"].weight
    imbalance = np.abs(w.sum(axis=1)).max()
    result = {"rate_exc_hz": float(rates[sign > 0].mean()), "rate_inh_hz": float(rates[sign < 0].mean()),
              "max_row_imbalance": float(imbalance)}
    print(f"excitatory {result['rate_exc_hz']:.1f} Hz, inhibitory {result['rate_inh_hz']:.1f} Hz, "
          f"largest |sum_j W[i, j]| of the recurrent weights: {imbalance:.1e}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    main(parser.parse_args().steps)
