"""Randman (Zenke & Vogels 2021): a recurrent LIF network under Dale's law, trained by BPTT and by e-prop.

Data: 10 random-manifold classes, 20 input channels each firing one spike in
100 steps (ntgraph.data.randman).  Network: 20 inputs -> 128 recurrent LIF
(80% excitatory, Dale's law, no self-connections, E/I-balanced initialisation) -> 10 LI readouts; the loss
is the time-averaged cross-entropy (decomposes over time, so e-prop applies).

Run:  .venv/bin/python examples/train_randman.py [--epochs 30] [--algorithm bptt|eprop|both] [--seeds 1]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import ntgraph as ntg
from backends.torchsim import learning as L
from ntgraph.data import randman


def build(n_in: int, n_hidden: int = 128, n_out: int = 10, seed: int = 0) -> ntg.Graph:
    g = ntg.Graph("randman-rlif", seed=seed)
    g.input("spikes", n_in)
    dt = 1e-3
    tau = np.random.default_rng(seed).uniform(10e-3, 30e-3, n_hidden)
    # r = tau/dt makes a weight the voltage jump of one input spike (tau dv/dt = -v + r*I with
    # I = W z a train of unit pulses), so weights stay O(1) and Adam's step size fits them.
    g.population("hidden", ntg.LIF(tau_mem=tau, r=tau / dt, v_th=1.0, reset="subtract"), n_hidden,
                 excitatory=0.8)
    g.dense("spikes", "hidden", scale=2.25 / np.sqrt(n_in))
    g.dense("hidden", "hidden", scale=0.5 / np.sqrt(n_hidden), no_self=True, balanced=True)
    g.population("readout", ntg.LI(tau_mem=20e-3, r=20e-3 / dt), n_out)
    g.dense("hidden", "readout", scale=1.0 / np.sqrt(n_hidden))
    g.output("y", "readout")
    return g


#: Adam learning rates: e-prop ignores the recurrent paths of the gradient, so at BPTT's rate its
#: recurrent excitation runs away (loss above chance after ~15 steps); 3e-3 is stable.
LEARNING_RATES = {"bptt": 1e-2, "eprop": 3e-3}


def run(algorithm: str, epochs: int, seed: int = 0, samples_per_class: int = 100, progress: bool = True) -> dict:
    torch.manual_seed(seed)
    data = randman(seed, n_classes=10, n_samples_per_class=samples_per_class, n_channels=20, steps=100,
                   spike_steps=80)
    graph = build(20, seed=seed)
    model = ntg.compile(graph, "torch", dt=1e-3)
    algo = {"bptt": L.BPTT(), "eprop": L.EProp()}[algorithm]
    trainer = L.Trainer(model, L.CrossEntropyOverTime(output="y", reduce="mean"),
                        optimizer=lambda p: torch.optim.Adam(p, lr=LEARNING_RATES[algorithm]), algorithm=algo, seed=seed,
                        progress=progress)
    trainer.fit(data.train, data.val, epochs=epochs, batch_size=32)
    test = trainer.evaluate(data.test, batch_size=256)
    ntg.validate(model.to_graph())  # Dale's law and every constraint hold in the trained IR
    return {"algorithm": algorithm, "seed": seed, "epochs": epochs, "test_accuracy": float(test["accuracy"]),
            "test_loss": float(test["loss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--algorithm", choices=("bptt", "eprop", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    algorithms = ("bptt", "eprop") if args.algorithm == "both" else (args.algorithm,)
    results = [run(a, args.epochs, s) for a in algorithms for s in range(args.seeds)]
    for a in algorithms:
        acc = [r["test_accuracy"] for r in results if r["algorithm"] == a]
        print(f"{a}: test accuracy {np.mean(acc):.3f} +- {np.std(acc):.3f} over {len(acc)} seed(s)")
    if args.json:
        with ntg.atomic_write(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
