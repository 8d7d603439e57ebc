"""Ablation resilience: remove recurrent connections from trained networks and measure test accuracy.

Takes the networks of examples/classification_experiment.py (LIF or
Wilson-Cowan hidden layer, with or without Dale's law) trained on each dataset
and seed, removes a fraction ``f`` of the recurrent ``hidden->hidden``
synapses (``ntgraph.ablation.ablate``: "smallest |w| first" or "random",
through the projection's ConnectivityMask, so Dale's law still holds) and
evaluates the test accuracy at ``f = 0, 0.1, ..., 1``.

Scores per network: ``auc`` = the mean accuracy over ``f`` in [0, 1]
(trapezoid rule), and ``auc_norm`` = the same for the accuracy above chance
relative to the intact network's, ``(acc(f) - chance) / (acc(0) - chance)``: 1
means ablation changes nothing, 0.5 a linear fall to chance.

Run (full, after the classification run that saved its networks; the numbers in
docs/experiments/ablation.md; each ablation run takes about 5-10 min on 2 busy cores):
    nice .venv/bin/python examples/classification_experiment.py --models-dir /tmp/ntgraph-cls-models
    nice .venv/bin/python examples/ablation_experiment.py --models-dir /tmp/ntgraph-cls-models
    nice .venv/bin/python examples/ablation_experiment.py --models-dir /tmp/ntgraph-cls-models \
        --tag hidden --projections 'x->hidden' 'hidden->hidden'
(quote the projection names: an unquoted ``>`` is a shell redirection).
Without saved networks it trains them first (the classification settings).
Smoke (seconds):  .venv/bin/python examples/ablation_experiment.py --smoke
Writes docs/experiments/data/ablation_<tag>.json and docs/img/ablation_<tag>.png
(``--tag``, default ``recurrent``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import Any, Optional

import numpy as np
import torch

import ntgraph as ntg
from ntgraph._atomic import atomic_write
from ntgraph.ablation import ablate

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STRATEGIES = ("smallest", "random")


def _classification() -> Any:
    """examples/classification_experiment.py as a module (the models, datasets and evaluation)."""
    name = "classification_experiment"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


def auc(fractions: np.ndarray, accuracy: np.ndarray) -> float:
    """Mean of ``accuracy`` over ``fractions`` spanning [0, 1] by the trapezoid rule."""
    f, a = np.asarray(fractions, float), np.asarray(accuracy, float)
    return float(np.sum((a[1:] + a[:-1]) * np.diff(f)) / 2.0 / (f[-1] - f[0]))


def curve(graph: ntg.Graph, test: Any, fractions: np.ndarray, strategy: str, seed: int,
          projections: tuple[str, ...] = ("hidden->hidden",)) -> list[float]:
    """Test accuracy of ``graph`` with each fraction of every named projection's synapses removed."""
    ce = _classification()
    return [ce.evaluate(ablate(graph, projections, float(f), strategy, seed=seed), test) for f in fractions]


def _mean_std(values: list[float]) -> dict[str, float]:
    """Mean and std (ddof=0) over the finite values (NaN: a network at chance before ablation); count kept."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def plot(result: dict, path: str) -> None:
    """One panel per dataset and strategy: mean accuracy (± std over seeds) against the removed fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets, models = result["config"]["datasets"], result["config"]["models"]
    f = np.asarray(result["config"]["fractions"])
    fig, axes = plt.subplots(len(datasets), len(STRATEGIES), figsize=(8, 2.8 * len(datasets)), squeeze=False)
    colors = {"lif": "#1f77b4", "lif+dale": "#6baed6", "wc": "#d62728", "wc+dale": "#fc9272"}
    styles = {"lif": "-", "lif+dale": "--", "wc": "-", "wc+dale": "--"}
    for i, d in enumerate(datasets):
        for j, s in enumerate(STRATEGIES):
            ax = axes[i, j]
            for m in models:
                curves = np.array([r["accuracy"] for r in result["runs"]
                                   if r["dataset"] == d and r["model"] == m and r["strategy"] == s])
                if not len(curves):
                    continue
                mean, std = curves.mean(0), curves.std(0)
                ax.plot(f, mean, styles[m], color=colors[m], label=m)
                ax.fill_between(f, mean - std, mean + std, color=colors[m], alpha=0.15)
            ax.axhline(result["chance"][d], color="k", ls=":", lw=1)
            ax.set_title(f"{d}: {s} |w| first" if s == "smallest" else f"{d}: random", fontsize=9)
            ax.set_ylim(0, 1)
            ax.set_xlabel("fraction removed of " + " + ".join(result["config"]["projections"]), fontsize=8)
            ax.set_ylabel("test accuracy")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny networks, 2 iterations, 3 fractions, 1 seed")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", default=["digits-rate", "randman"])
    parser.add_argument("--models", nargs="+", default=None, help="a subset of the four networks (default: all)")
    parser.add_argument("--projections", nargs="+", default=["hidden->hidden"],
                        help="projections to ablate (each loses the same fraction); e.g. x->hidden hidden->hidden")
    parser.add_argument("--models-dir", default=None, help="trained networks saved by classification_experiment.py")
    parser.add_argument("--tag", default="recurrent", help="names the outputs: ablation_<tag>.json / .png")
    parser.add_argument("--out-json", default=None, help="default docs/experiments/data/ablation_<tag>.json")
    parser.add_argument("--out-fig", default=None, help="default docs/img/ablation_<tag>.png")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other datasets' runs already in --out-json (re-run only --datasets)")
    args = parser.parse_args(argv)
    args.out_json = args.out_json or os.path.join(ROOT, "docs", "experiments", "data", f"ablation_{args.tag}.json")
    args.out_fig = args.out_fig or os.path.join(ROOT, "docs", "img", f"ablation_{args.tag}.png")
    torch.set_num_threads(1)
    ce = _classification()
    seeds = 1 if args.smoke else args.seeds
    fractions = np.array([0.0, 0.5, 1.0]) if args.smoke else np.round(np.linspace(0.0, 1.0, 11), 2)
    models = list(args.models or ce.MODELS)
    runs, summary = [], {}
    for d in args.datasets:
        task = ce.TASKS[d]
        for seed in range(seeds):
            data = task.load(seed, 64 if args.smoke else None)
            for m in models:
                path = None if args.models_dir is None else os.path.join(args.models_dir, f"{d}__{m}__{seed}.ntg")
                if path is not None and os.path.exists(path):
                    graph = ntg.load(path)
                elif args.smoke:
                    graph, _ = ce.train(task, m, seed, hidden=16, iterations=2, data=data)
                else:
                    graph, _ = ce.train(task, m, seed, epochs=task.epochs, data=data)
                for s in STRATEGIES:
                    acc = curve(graph, data.test, fractions, s, seed, tuple(args.projections))
                    chance = 1.0 / task.n_classes
                    base = acc[0] - chance
                    norm = [(a - chance) / base for a in acc] if base > 0 else [float("nan")] * len(acc)
                    runs.append({"dataset": d, "model": m, "seed": seed, "strategy": s, "accuracy": acc,
                                 "auc": auc(fractions, np.array(acc)), "auc_norm": auc(fractions, np.array(norm))})
                    print(f"{d:12s} {m:9s} seed {seed} {s:8s}: acc " + " ".join(f"{a:.2f}" for a in acc)
                          + f"  auc {runs[-1]['auc']:.3f} auc_norm {runs[-1]['auc_norm']:.3f}", flush=True)
    datasets = list(args.datasets)
    if args.merge and os.path.exists(args.out_json):
        with open(args.out_json) as fh:
            old = [r for r in json.load(fh)["runs"] if r["dataset"] not in args.datasets]
        runs = old + runs
        datasets = list(dict.fromkeys([r["dataset"] for r in old])) + datasets
    for d in datasets:
        for m in models:
            for s in STRATEGIES:
                rows = [r for r in runs if r["dataset"] == d and r["model"] == m and r["strategy"] == s]
                summary.setdefault(d, {}).setdefault(m, {})[s] = {key: _mean_std([r[key] for r in rows])
                                                                  for key in ("auc", "auc_norm")}
                summary[d][m][s]["intact"] = float(np.mean([r["accuracy"][0] for r in rows]))
    result = {"config": {"smoke": args.smoke, "seeds": seeds, "datasets": datasets, "models": models,
                         "fractions": fractions.tolist(), "projections": args.projections,
                         "strategies": list(STRATEGIES)},
              "chance": {d: 1.0 / ce.TASKS[d].n_classes for d in datasets}, "summary": summary, "runs": runs}
    for path in (args.out_json, args.out_fig):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(args.out_json, "w") as fh:
        json.dump(result, fh, indent=1)
    plot(result, args.out_fig)
    for d, ms in summary.items():
        for m, ss in ms.items():
            print(f"{d:12s} {m:9s} " + "  ".join(
                f"{s}: auc_norm {v['auc_norm']['mean']:.3f} ± {v['auc_norm']['std']:.3f}" for s, v in ss.items()))
    return result


if __name__ == "__main__":
    main()
