"""Classification on real data: spiking vs Wilson-Cowan networks, with and without Dale's law, over 5 seeds.

Models (one architecture for every dataset): ``n_in`` inputs -> ``hidden``
recurrent units -> ``n_classes`` LI readouts (tau 20 ms), dt = 1 ms, BPTT with
Adam on the time-averaged cross-entropy.

* ``lif``: LIF hidden units (tau 20 ms, r = tau/dt so a weight is the voltage
  jump of one input spike, threshold 1, subtractive reset), no self-connections.
* ``wc``: Wilson-Cowan hidden units (tau 20 ms, mu 1, r 0: ``tau dx/dt = -x + sigmoid(I - 1)``),
  driven by the same spike trains, no self-connections; trained at 3x the
  LIF network's learning rate (a short sweep on digits: 3e-2 beat 1e-2 for WC).
* ``+dale``: the hidden population obeys Dale's law, 80% excitatory / 20%
  inhibitory (its recurrent and readout weights are sign-constrained; the
  recurrent weights start E/I balanced). Without it the signs are free.

Datasets (``ntgraph.data``): 8x8 digits rate-coded (Bernoulli, up to 200 Hz) and
latency-coded (one spike per pixel, brighter earlier), MNIST-5k rate-coded,
Randman (10 classes, 20 channels) and the grasshopper louder/quieter task
(one real auditory receptor's spike train, ``load_grasshopper``).

Run (full, the numbers in docs/experiments/classification.md; about 27 min on 2 busy cores):
    nice .venv/bin/python examples/classification_experiment.py --models-dir /tmp/ntgraph-cls-models
Smoke (a few iterations, seconds):
    .venv/bin/python examples/classification_experiment.py --smoke
Writes docs/experiments/data/classification.json and docs/img/classification.png
(``--out-json``/``--out-fig`` to change); ``--models-dir`` keeps every trained
network (``ntgraph.save``) for examples/ablation_experiment.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import torch

import ntgraph as ntg
from backends.torchsim import learning as L
from ntgraph._atomic import atomic_write
from ntgraph.data import Splits, load_digits, load_grasshopper, load_mnist5k, randman
from ntgraph.encoding import latency_encode, rate_encode

DT = 1e-3
TAU = 20e-3
MODELS = ("lif", "lif+dale", "wc", "wc+dale")
#: Wilson-Cowan networks train at this multiple of the task's (LIF) learning rate.
WC_LR_FACTOR = 3.0
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Task(NamedTuple):
    """One dataset as the experiment uses it: a loader ``seed -> Splits`` of ``[T, F]`` samples and its budget."""

    name: str
    load: Callable[..., Splits]  # (seed, limit=None) -> Splits; limit keeps the first samples of each split
    n_in: int
    n_classes: int
    epochs: int
    batch_size: int = 64
    lr: float = 1e-2


def _limit(splits: Splits, n: Optional[int]) -> Splits:
    if n is None:
        return splits
    return Splits(*(part.subset(np.arange(min(n, len(part)))) for part in splits))


def _digits_rate(seed: int, limit: Optional[int] = None) -> Splits:
    return _limit(load_digits(seed), limit).encode(rate_encode, 20, seed=seed, max_rate_hz=200.0, dt=DT)


def _digits_latency(seed: int, limit: Optional[int] = None) -> Splits:
    return _limit(load_digits(seed), limit).encode(latency_encode, 20, method="linear", threshold=0.05)


def _mnist(seed: int, limit: Optional[int] = None) -> Splits:
    return _limit(load_mnist5k(seed), limit).encode(rate_encode, 20, seed=seed, max_rate_hz=200.0, dt=DT)


def _randman(seed: int, limit: Optional[int] = None) -> Splits:
    return _limit(randman(seed, n_classes=10, n_samples_per_class=100, n_channels=20, steps=50, spike_steps=40), limit)


def _grasshopper(seed: int, limit: Optional[int] = None) -> Splits:
    return _limit(load_grasshopper(seed), limit)


TASKS = {
    "digits-rate": Task("digits-rate", _digits_rate, 64, 10, epochs=8),
    "digits-latency": Task("digits-latency", _digits_latency, 64, 10, epochs=8),
    "mnist5k": Task("mnist5k", _mnist, 784, 10, epochs=3, lr=5e-3),
    "randman": Task("randman", _randman, 20, 10, epochs=30),
    "grasshopper": Task("grasshopper", _grasshopper, 1, 2, epochs=20, lr=3e-3),
}


def build(model: str, n_in: int, n_out: int, hidden: int = 64, seed: int = 0) -> ntg.Graph:
    """The network ``model`` (one of :data:`MODELS`): ``n_in -> hidden (recurrent) -> n_out`` LI readouts."""
    kind, dale = model.split("+")[0], model.endswith("+dale")
    g = ntg.Graph(f"cls-{model}", seed=seed)
    g.input("x", n_in)
    excitatory = 0.8 if dale else None
    if kind == "lif":
        g.population("hidden", ntg.LIF(tau_mem=TAU, r=TAU / DT, v_th=1.0, reset="subtract"), hidden,
                     excitatory=excitatory)
        g.dense("x", "hidden", scale=2.0 / np.sqrt(n_in))
        g.dense("hidden", "hidden", scale=0.5 / np.sqrt(hidden), no_self=True, balanced=dale)
    elif kind == "wc":
        g.population("hidden", ntg.WilsonCowan(tau=TAU, mu=1.0, r=0.0), hidden, excitatory=excitatory)
        g.dense("x", "hidden", scale=8.0 / np.sqrt(n_in))
        g.dense("hidden", "hidden", scale=1.0 / np.sqrt(hidden), no_self=True, balanced=dale)
    else:
        raise ValueError(f"build model: expected one of {MODELS}, got {model!r}")
    g.population("readout", ntg.LI(tau_mem=TAU, r=TAU / DT), n_out)
    g.dense("hidden", "readout", scale=1.0 / np.sqrt(hidden))
    g.output("y", "readout")
    return g


def evaluate(graph: ntg.Graph, data: Any, batch_size: int = 256) -> float:
    """Test accuracy of ``graph`` (compiled for torch) on ``data``: argmax of the time-mean readout."""
    model = ntg.compile(graph, "torch", dt=DT)
    trainer = L.Trainer(model, L.CrossEntropyOverTime(output="y", reduce="mean"), progress=False)
    return float(trainer.evaluate(data, batch_size=batch_size)["accuracy"])


def train(task: Task, model: str, seed: int, *, hidden: int = 64, epochs: Optional[int] = None,
          iterations: Optional[int] = None, limit: Optional[int] = None, data: Optional[Splits] = None,
          progress: bool = False) -> tuple[ntg.Graph, dict[str, Any]]:
    """Train one network; returns the trained IR graph and a result row (test accuracy, timings)."""
    torch.manual_seed(seed)
    data = data if data is not None else task.load(seed, limit)
    graph = build(model, task.n_in, task.n_classes, hidden, seed)
    compiled = ntg.compile(graph, "torch", dt=DT)
    lr = task.lr * (WC_LR_FACTOR if model.startswith("wc") else 1.0)
    trainer = L.Trainer(compiled, L.CrossEntropyOverTime(output="y", reduce="mean"),
                        optimizer=lambda p: torch.optim.Adam(p, lr=lr), seed=seed, progress=progress)
    t0 = time.perf_counter()
    trainer.fit(data.train, epochs=epochs if iterations is None else None, iterations=iterations,
                batch_size=task.batch_size)
    seconds = time.perf_counter() - t0
    trained = compiled.to_graph()
    ntg.validate(trained)  # Dale's law and no-self hold in the written-back IR
    test = trainer.evaluate(data.test, batch_size=256)
    return trained, {"dataset": task.name, "model": model, "seed": seed, "hidden": hidden,
                     "epochs": epochs, "iterations": trainer.iteration, "lr": lr, "train_seconds": round(seconds, 2),
                     "test_accuracy": float(test["accuracy"]), "n_train": len(data.train), "n_test": len(data.test)}


def summarise(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """``{dataset: {model: {"mean", "std", "n"}}}`` of the test accuracies (std over seeds, ddof=0)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        out.setdefault(r["dataset"], {}).setdefault(r["model"], []).append(r["test_accuracy"])  # type: ignore[arg-type]
    return {d: {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for m, v in ms.items()}
            for d, ms in out.items()}


def plot(summary: dict, path: str, chance: dict[str, float]) -> None:
    """Grouped bar chart of mean test accuracy with +-1 std error bars, one group per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(summary)
    fig, ax = plt.subplots(figsize=(1.9 * len(datasets) + 2, 3.6))
    width = 0.8 / len(MODELS)
    colors = {"lif": "#1f77b4", "lif+dale": "#6baed6", "wc": "#d62728", "wc+dale": "#fc9272"}
    for k, m in enumerate(MODELS):
        xs = [i + (k - (len(MODELS) - 1) / 2) * width for i in range(len(datasets))]
        means = [summary[d].get(m, {}).get("mean", np.nan) for d in datasets]
        stds = [summary[d].get(m, {}).get("std", 0.0) for d in datasets]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=m, color=colors[m])
    for i, d in enumerate(datasets):
        ax.plot([i - 0.45, i + 0.45], [chance[d]] * 2, "k:", lw=1)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.15), frameon=False)
    ax.set_title("mean ± std over seeds (dotted: chance)", fontsize=9, pad=28)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 iterations on 64 samples per split, 1 seed")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--datasets", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out-json", default=os.path.join(ROOT, "docs", "experiments", "data", "classification.json"))
    parser.add_argument("--out-fig", default=os.path.join(ROOT, "docs", "img", "classification.png"))
    parser.add_argument("--models-dir", default=None, help="save every trained graph here (for the ablation experiment)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other datasets' runs already in --out-json (re-run only --datasets)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = 1 if args.smoke else args.seeds
    rows = []
    for name in args.datasets:
        task = TASKS[name]
        for seed in range(seeds):
            data = task.load(seed, 64 if args.smoke else None)  # loaded once, shared by the four models of this seed
            for model in args.models:
                if args.smoke:
                    graph, row = train(task, model, seed, hidden=16, iterations=2, data=data)
                else:
                    graph, row = train(task, model, seed, hidden=args.hidden, epochs=task.epochs, data=data)
                rows.append(row)
                print(f"{name:15s} {model:9s} seed {seed}: test accuracy {row['test_accuracy']:.3f} "
                      f"({row['train_seconds']:.0f} s)", flush=True)
                if args.models_dir:
                    os.makedirs(args.models_dir, exist_ok=True)
                    ntg.save(graph, os.path.join(args.models_dir, f"{name}__{model}__{seed}.ntg"))
    if args.merge and os.path.exists(args.out_json):
        with open(args.out_json) as fh:
            rows = [r for r in json.load(fh)["runs"] if r["dataset"] not in args.datasets] + rows
    summary = summarise(rows)
    chance = {d: 1.0 / TASKS[d].n_classes for d in summary}
    result = {"config": {"smoke": args.smoke, "seeds": seeds, "hidden": 16 if args.smoke else args.hidden,
                         "dt": DT, "wc_lr_factor": WC_LR_FACTOR,
                         "tasks": {d: {"epochs": TASKS[d].epochs, "lr": TASKS[d].lr,
                                       "batch_size": TASKS[d].batch_size} for d in summary}},
              "summary": summary, "runs": rows}
    for d, ms in summary.items():
        print(d + ": " + ", ".join(f"{m} {v['mean']:.3f} ± {v['std']:.3f}" for m, v in ms.items()))
    for path in (args.out_json, args.out_fig):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(args.out_json, "w") as fh:
        json.dump(result, fh, indent=1)
    plot(summary, args.out_fig, chance)
    return result


if __name__ == "__main__":
    main()
