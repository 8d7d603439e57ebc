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

``--task reconstruction`` (NeuroTorch's own setting: networks fitted to
activity): trains recurrent networks by BPTT to reproduce the chaotic teacher
(``ntgraph.data.chaotic_teacher``, 50 units, 3000 steps, windows of 50 steps,
split 60/20/20 along time; each window starts from the recorded activity one
step before it and runs freely on the network's own state, as in
examples/reconstruct_activity.py), Wilson-Cowan (50 units, recurrent
``units->units``) and spiking (200 LIF with recurrent ``spiking->spiking``, an
LI readout of 50 units fed back into the LIF), each with and without Dale's law
(80% E), then removes a fraction ``f = 0, 0.1, ..., 0.9`` of the recurrent
matrix and scores the held-out PVar.  ``auc_norm`` = the mean over ``f`` of
``max(PVar(f), 0) / PVar(0)`` (0: no better than each window's mean).
Run (~10 min on 2 busy cores):
    nice .venv/bin/python examples/ablation_experiment.py --task reconstruction
Writes docs/experiments/data/ablation_reconstruction.json and docs/img/ablation_reconstruction.png.
Smoke: ``--task reconstruction --smoke``.
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
from ntgraph.data import chaotic_teacher
from ntgraph.metrics import pvar

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


# ----------------------------------------------------------------------------- reconstruction task
RECON_DT = 1e-3  # one network step per recorded sample (s)
RECON_WINDOW = 50  # steps per free-running window (2.5 teacher time constants)
RECON_UNITS = 50
#: the recurrent matrix that is ablated, and the population whose state is the prediction
RECON_RECURRENT = {"wc": ("units->units", "units"), "lif": ("spiking->spiking", "readout")}


def recon_graph(model: str, n: int, seed: int, n_hidden: int = 200) -> ntg.Graph:
    """A student for the reconstruction task; ``model`` is ``lif``/``wc`` with an optional ``+dale`` (80% E).

    * ``wc``: ``n`` Wilson-Cowan units ``tau dx/dt = -x + sigmoid(W x + b - mu)``
      (learnable tau, mu), recurrent ``W`` (delay 1, no self-connections); the
      rates are the prediction.
    * ``lif``: ``n_hidden`` LIF neurons (tau_mem uniform in 5-20 ms, subtractive
      reset) with recurrent ``spiking->spiking`` (no self), an LI readout of ``n``
      units (tau 5 ms) whose voltage is the prediction and which feeds back into
      the LIF layer (delay 1).  Dale's law, when on, constrains the LIF neurons'
      outgoing synapses (the recurrent matrix and the readout).
    """
    kind, dale = model.split("+")[0], model.endswith("+dale")
    excitatory = 0.8 if dale else None
    g = ntg.Graph(f"{model}-student", seed=seed)
    g.input("none", 1)
    if kind == "wc":
        g.population("units", ntg.WilsonCowan(tau=5e-3, mu=0.0), n, excitatory=excitatory, learnable=("tau", "mu"))
        g.dense("units", "units", scale=0.5 / np.sqrt(n), bias=np.zeros(n), no_self=True)
        g.output("y", "units")
        return g
    tau = np.random.default_rng(seed).uniform(5e-3, 20e-3, n_hidden)
    g.population("spiking", ntg.LIF(tau_mem=tau, reset="subtract"), n_hidden, excitatory=excitatory)
    g.population("readout", ntg.LI(tau_mem=5e-3), n)
    g.dense("readout", "spiking", scale=3.0, bias=np.full(n_hidden, 0.5))
    g.dense("spiking", "spiking", scale=0.3 / np.sqrt(n_hidden), no_self=True)
    g.dense("spiking", "readout", scale=1.0 / np.sqrt(n_hidden), bias=np.full(n, 0.5))
    g.output("y", "readout")
    return g


def free_run(model: torch.nn.Module, pop: str, part: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and target ``[W, B, N]``: each window runs freely from the recorded activity one step before it."""
    dtype = next(model.parameters()).dtype
    x, y = (torch.as_tensor(a, dtype=dtype).transpose(0, 1) for a in (part.x, part.y))
    state = model.initial_state(y.shape[1], y)
    state.neurons[pop] = (x[0],)
    if pop in state.history:
        state.history[pop] = [x[0]]
    return model(torch.zeros(y.shape[0], y.shape[1], 1, dtype=dtype), state=state)["y"], y


def held_out_pvar(graph: ntg.Graph, pop: str, part: Any) -> float:
    """PVar (``ntgraph.metrics.pvar``: per window, averaged) of ``graph`` running freely on ``part``."""
    model = ntg.compile(graph, "torch", dt=RECON_DT)
    with torch.no_grad():
        pred, target = free_run(model, pop, part)
    return pvar(pred.double().numpy(), target.double().numpy())


def train_reconstruction(model_name: str, seed: int, data: Any, iterations: int,
                         n_hidden: int = 200) -> tuple[ntg.Graph, float]:
    """Train one student by BPTT (Adam, MSE over free-running windows); returns (best-validation graph, val PVar)."""
    torch.manual_seed(seed)
    kind = model_name.split("+")[0]
    pop = RECON_RECURRENT[kind][1]
    model = ntg.compile(recon_graph(model_name, RECON_UNITS, seed, n_hidden), "torch", dt=RECON_DT)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2 if kind == "wc" else 3e-3)
    train, val, _ = data.splits
    best: tuple[float, Any] = (-np.inf, None)
    for it in range(iterations):
        optimizer.zero_grad()
        prediction, target = free_run(model, pop, train)
        torch.mean((prediction - target) ** 2).backward()
        optimizer.step()
        if it % 25 == 0 or it == iterations - 1:
            with torch.no_grad():
                score = float(pvar(*(a.double().numpy() for a in free_run(model, pop, val))))
            if score > best[0] or best[1] is None:
                best = (score, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    graph = model.to_graph()
    ntg.validate(graph)  # Dale's law holds in the trained IR
    return graph, best[0]


def recon_teacher(seed: int, steps: int) -> Any:
    """The chaotic teacher of network seed ``seed``: teacher seed ``seed``, or ``seed + 1000 k`` for the first
    ``k`` whose network stays chaotic (a few 50-unit networks settle to a fixed point)."""
    for k in range(10):
        try:
            return chaotic_teacher(n_units=RECON_UNITS, steps=steps, window=RECON_WINDOW, seed=seed + 1000 * k,
                                   dt=RECON_DT)
        except ntg.errors.ValidationError:
            continue
    raise ntg.errors.ValidationError(f"chaotic_teacher: no chaotic network among seeds {seed} + 1000 k, k < 10")


def hold_pvar(part: Any) -> float:
    """PVar of holding the last recorded value before each window (the trivial baseline)."""
    x, y = (np.swapaxes(np.asarray(a, dtype=np.float64), 0, 1) for a in (part.x, part.y))
    return pvar(np.broadcast_to(x[:1], y.shape), y)


def run_reconstruction(args: argparse.Namespace) -> dict:
    """The ``--task reconstruction`` experiment: train, ablate the recurrent matrix, score held-out PVar."""
    seeds = 1 if args.smoke else (args.seeds or 3)
    fractions = np.array([0.0, 0.5, 0.9]) if args.smoke else np.round(np.linspace(0.0, 0.9, 10), 2)
    models = list(args.models or ("lif", "lif+dale", "wc", "wc+dale"))
    iterations = args.iterations or (3 if args.smoke else 300)
    n_hidden = 32 if args.smoke else 200
    runs, trained = [], []
    baseline = []
    for seed in range(seeds):
        data = recon_teacher(seed, 500 if args.smoke else 3000)
        test = data.splits.test
        baseline.append(hold_pvar(test))
        for m in models:
            projection, pop = RECON_RECURRENT[m.split("+")[0]]
            path = None if args.models_dir is None else os.path.join(args.models_dir, f"teacher__{m}__{seed}.ntg")
            if path is not None and os.path.exists(path):
                graph, val = ntg.load(path), float("nan")
            else:
                graph, val = train_reconstruction(m, seed, data, iterations, n_hidden)
                if path is not None:
                    os.makedirs(args.models_dir, exist_ok=True)
                    ntg.save(graph, path)
            trained.append({"model": m, "seed": seed, "teacher_seed": int(data.params["seed"]), "val_pvar": val})
            for s in STRATEGIES:
                scores = [held_out_pvar(ablate(graph, projection, float(f), s, seed=seed), pop, test)
                          for f in fractions]
                norm = [max(v, 0.0) / scores[0] for v in scores] if scores[0] > 0 else [float("nan")] * len(scores)
                runs.append({"dataset": "teacher", "model": m, "seed": seed, "strategy": s, "pvar": scores,
                             "projection": projection, "auc": auc(fractions, np.maximum(scores, 0.0)),
                             "auc_norm": auc(fractions, np.array(norm))})
                print(f"teacher {m:9s} seed {seed} {s:8s}: PVar " + " ".join(f"{v:.2f}" for v in scores)
                      + f"  auc {runs[-1]['auc']:.3f} auc_norm {runs[-1]['auc_norm']:.3f}", flush=True)
    summary: dict = {"teacher": {}}
    for m in models:
        for s in STRATEGIES:
            rows = [r for r in runs if r["model"] == m and r["strategy"] == s]
            summary["teacher"].setdefault(m, {})[s] = {key: _mean_std([r[key] for r in rows])
                                                       for key in ("auc", "auc_norm")}
            summary["teacher"][m][s]["intact"] = _mean_std([r["pvar"][0] for r in rows])
            summary["teacher"][m][s]["at_0.5"] = _mean_std([r["pvar"][int(np.argmin(abs(fractions - 0.5)))]
                                                           for r in rows])
    return {"config": {"task": "reconstruction", "smoke": args.smoke, "seeds": seeds, "datasets": ["teacher"],
                       "models": models, "fractions": fractions.tolist(), "metric": "pvar",
                       "projections": {m: RECON_RECURRENT[m.split("+")[0]][0] for m in models},
                       "strategies": list(STRATEGIES), "iterations": iterations, "n_hidden": n_hidden,
                       "window": RECON_WINDOW, "teacher": {"n_units": RECON_UNITS, "steps": 500 if args.smoke else 3000,
                                                           "split": "60/20/20 along time"},
                       "auc_norm": "mean over f of max(PVar(f), 0) / PVar(0), trapezoid rule"},
            "chance": {"teacher": 0.0}, "hold_baseline_test_pvar": _mean_std(baseline),
            "trained": trained, "summary": summary, "runs": runs}


def plot(result: dict, path: str) -> None:
    """One panel per dataset and strategy: mean score (± std over seeds) against the removed fraction.

    The score is test accuracy (classification) or held-out PVar (reconstruction,
    ``config["metric"] == "pvar"``; the axis is cut at -0.2).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets, models = result["config"]["datasets"], result["config"]["models"]
    f = np.asarray(result["config"]["fractions"])
    metric = result["config"].get("metric", "accuracy")
    projections = result["config"]["projections"]
    removed = "the recurrent matrix" if isinstance(projections, dict) else " + ".join(projections)
    fig, axes = plt.subplots(len(datasets), len(STRATEGIES), figsize=(8, 2.8 * len(datasets)), squeeze=False)
    colors = {"lif": "#1f77b4", "lif+dale": "#6baed6", "wc": "#d62728", "wc+dale": "#fc9272"}
    styles = {"lif": "-", "lif+dale": "--", "wc": "-", "wc+dale": "--"}
    for i, d in enumerate(datasets):
        for j, s in enumerate(STRATEGIES):
            ax = axes[i, j]
            for m in models:
                curves = np.array([r[metric] for r in result["runs"]
                                   if r["dataset"] == d and r["model"] == m and r["strategy"] == s])
                if not len(curves):
                    continue
                mean, std = curves.mean(0), curves.std(0)
                ax.plot(f, mean, styles[m], color=colors[m], label=m)
                ax.fill_between(f, mean - std, mean + std, color=colors[m], alpha=0.15)
            ax.axhline(result["chance"][d], color="k", ls=":", lw=1)
            if "hold_baseline_test_pvar" in result:  # reconstruction: holding the last recorded value
                ax.axhline(result["hold_baseline_test_pvar"]["mean"], color="0.5", ls="-.", lw=1, label="hold last value")
            ax.set_title(f"{d}: {s} |w| first" if s == "smallest" else f"{d}: random", fontsize=9)
            ax.set_ylim((-0.2, 1) if metric == "pvar" else (0, 1))
            ax.set_xlabel("fraction removed of " + removed, fontsize=8)
            ax.set_ylabel("held-out PVar" if metric == "pvar" else "test accuracy")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny networks, 2 iterations, 3 fractions, 1 seed")
    parser.add_argument("--task", choices=("classification", "reconstruction"), default="classification",
                        help="classification networks (digits, Randman) or networks fitted to the chaotic teacher")
    parser.add_argument("--seeds", type=int, default=None, help="default 5 (classification) or 3 (reconstruction)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="reconstruction: BPTT iterations (default 300; smoke 3)")
    parser.add_argument("--datasets", nargs="+", default=["digits-rate", "randman"])
    parser.add_argument("--models", nargs="+", default=None, help="a subset of the four networks (default: all)")
    parser.add_argument("--projections", nargs="+", default=["hidden->hidden"],
                        help="projections to ablate (each loses the same fraction); e.g. x->hidden hidden->hidden")
    parser.add_argument("--models-dir", default=None,
                        help="trained networks saved by classification_experiment.py (reconstruction: "
                             "loaded from / saved to here)")
    parser.add_argument("--tag", default=None,
                        help="names the outputs: ablation_<tag>.json / .png (default recurrent or reconstruction)")
    parser.add_argument("--out-json", default=None, help="default docs/experiments/data/ablation_<tag>.json")
    parser.add_argument("--out-fig", default=None, help="default docs/img/ablation_<tag>.png")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other datasets' runs already in --out-json (re-run only --datasets)")
    args = parser.parse_args(argv)
    args.tag = args.tag or ("reconstruction" if args.task == "reconstruction" else "recurrent")
    args.out_json = args.out_json or os.path.join(ROOT, "docs", "experiments", "data", f"ablation_{args.tag}.json")
    args.out_fig = args.out_fig or os.path.join(ROOT, "docs", "img", f"ablation_{args.tag}.png")
    torch.set_num_threads(1)
    if args.task == "reconstruction":
        return _write(run_reconstruction(args), args)
    ce = _classification()
    seeds = 1 if args.smoke else (args.seeds or 5)
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
    return _write(result, args)


def _write(result: dict, args: argparse.Namespace) -> dict:
    """Save the JSON and the figure, print the normalised AUC table, return ``result``."""
    for path in (args.out_json, args.out_fig):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(args.out_json, "w") as fh:
        json.dump(result, fh, indent=1)
    plot(result, args.out_fig)
    for d, ms in result["summary"].items():
        for m, ss in ms.items():
            print(f"{d:12s} {m:9s} " + "  ".join(
                f"{s}: auc_norm {v['auc_norm']['mean']:.3f} ± {v['auc_norm']['std']:.3f}" for s, v in ss.items()))
    return result


if __name__ == "__main__":
    main()
