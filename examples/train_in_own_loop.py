"""Train a compiled spiking network in your own PyTorch loop: it is a plain ``nn.Module``.

No trainer involved: the compiled model's parameters go to any torch optimiser,
its forward is differentiable (BPTT through surrogate gradients), and the
ntgraph objectives and metrics are ordinary functions of tensors.  At the end
the trained weights go back into the IR (``model.to_graph()``), which every
export (NIR, ONNX, Lava) starts from.  Dale's law holds throughout, whatever
the optimiser does, because the constraint is a reparametrisation.

The task: classify Poisson spike trains whose per-channel rates depend on the
class (3 classes, 12 input channels), with a recurrent LIF layer (80% E / 20% I)
and a leaky-integrator readout.

Run:  .venv/bin/python examples/train_in_own_loop.py [--epochs 10] [--out trained.ntg]
"""

from __future__ import annotations

import argparse
from typing import Optional

import numpy as np
import torch

import ntgraph as ntg
from backends.torchsim.learning import CrossEntropyOverTime, FiringRateTarget, accuracy

N_IN, N_HIDDEN, N_CLASSES, DT = 12, 32, 3, 1e-3


def build(seed: int = 0) -> ntg.Graph:
    g = ntg.Graph("own-loop", seed=seed)
    g.input("spikes_in", N_IN, excitatory=1.0)
    g.population("hidden", ntg.LIF(tau_mem=10e-3, v_th=0.5, reset="subtract"), N_HIDDEN, excitatory=0.8)
    g.dense("spikes_in", "hidden", scale=1.5, bounds=(0.0, 5.0))
    g.dense("hidden", "hidden", scale=0.2, no_self=True)
    g.population("readout", ntg.LI(tau_mem=20e-3), N_CLASSES)
    g.dense("hidden", "readout", bias=np.zeros(N_CLASSES))
    g.output("logits", "readout")
    return g


def make_data(n: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike trains ``[steps, n, N_IN]`` (time-major) and labels ``[n]``."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, N_CLASSES, (n,), generator=gen)
    rate_hz = torch.full((N_CLASSES, N_IN), 10.0)
    for c in range(N_CLASSES):
        rate_hz[c, c * (N_IN // N_CLASSES):(c + 1) * (N_IN // N_CLASSES)] = 80.0
    p = (rate_hz[labels] * DT)[None].expand(steps, n, N_IN)
    return (torch.rand(steps, n, N_IN, generator=gen) < p).float(), labels


def main(epochs: int = 10, steps: int = 50, batch: int = 16, out: Optional[str] = None) -> dict[str, float]:
    torch.manual_seed(0)
    model = ntg.compile(build(), "torch", dt=DT, record=["hidden"])  # record the spikes for the rate penalty
    assert isinstance(model, torch.nn.Module)
    x_train, y_train = make_data(96, steps, seed=1)
    x_test, y_test = make_data(48, steps, seed=2)

    objective = CrossEntropyOverTime(output="logits", reduce="mean")
    rate_penalty = FiringRateTarget("hidden", target_hz=20.0, weight=1.0)
    rate_penalty.prepare(model)  # reads dt from the model, checks the population
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)

    losses = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_train))
        epoch_loss = 0.0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            result = model(x_train[:, idx])  # [T, B, F] in, SimulationResult out
            loss = objective(result["logits"], y_train[idx]) + rate_penalty(result)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss += float(loss.detach()) * len(idx)
        scheduler.step()
        losses.append(epoch_loss / len(y_train))
        model.eval()
        with torch.no_grad():
            test_acc = float(accuracy(model(x_test)["logits"], y_test, reduce="mean"))
        print(f"epoch {epoch + 1:2d}  loss {losses[-1]:.4f}  test accuracy {test_acc:.3f}")

    trained = model.to_graph()
    ntg.validate(trained)  # Dale's law and the bounds still hold in the trained IR
    w_rec = trained["hidden->hidden"].weight
    sign = np.sign(w_rec[np.abs(w_rec) > 0]).reshape(-1)
    print(f"trained IR: {len(trained)} nodes, recurrent weights with signs {sorted(set(sign.tolist()))}")
    if out:
        ntg.save(trained, out)
        print(f"wrote {out}")
    return {"first_loss": losses[0], "last_loss": losses[-1], "test_accuracy": test_acc}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", default=None, help="write the trained graph (.ntg)")
    args = parser.parse_args()
    main(epochs=args.epochs, steps=args.steps, out=args.out)
