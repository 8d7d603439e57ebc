"""Lava's Loihi 2 simulator against the torch backend on the same networks: steps per second.

For each network it measures, side by side:

* ``lava float`` / ``lava fixed``: ``ntgraph.compile(g, "lava", precision=...)`` on
  Lava's ``Loihi2SimCfg`` (one sample; Lava starts one worker process per process);
* ``torch float32``: the torch backend (``timing="pipelined"``, the same network);
* ``torch loihi``: the torch backend's bit-exact Loihi 2 mode
  (:mod:`backends.torchsim.loihi`, float64 integers), which computes exactly
  what ``lava fixed`` computes.

Steady-state speed excludes start-up: after a warm-up, each target runs ``T``
and ``2T`` steps ``--repeats`` times, and ``steps/s = T / (best time(2T) - best
time(T))``; the best time of one ``T``-step run (for Lava: building, compiling,
starting and stopping its worker processes included) is reported as well.  A
batched row shows samples*steps per second of the torch Loihi mode for
``--batch`` samples at once.  Prints a markdown table and a JSON line.

``--accuracy`` instead trains a recurrent LIF network on MNIST-1D (Greydanus
2020; generated offline by the ``mnist1d`` package: 4000 training and 1000 test
sequences of 40 steps, one graded input channel, 10 classes) with BPTT in the
torch backend under Lava's timing (``timing="pipelined"``), then reports its
test accuracy in the torch backend, Lava floating point, Lava fixed point
(graded inputs with ``input_scale=64``) and the torch Loihi mode, and after a
few epochs of quantisation-aware training in the Loihi mode, again on Lava
fixed point.

    .venv/bin/python benchmarks/bench_lava.py [--steps 200] [--neurons 1000] [--batch 64] [--threads 1]
    .venv/bin/python benchmarks/bench_lava.py --accuracy [--epochs 20] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import numpy as np
import torch

import ntgraph as ntg
from ntgraph.compiler import CompileOptions, prepare
from ntgraph.passes.quantize import quantize

DT = 1e-3


def networks(n: int) -> dict[str, ntg.Graph]:
    ff = ntg.Graph("feedforward", seed=0)
    ff.input("x", 100)
    ff.population("h1", ntg.LIF(tau_mem=10e-3, v_th=1.0), 200)
    ff.population("h2", ntg.LIF(tau_mem=10e-3, v_th=1.0), 100)
    ff.population("o", ntg.LI(tau_mem=10e-3), 10)
    ff.dense("x", "h1", scale=0.5)
    ff.dense("h1", "h2", scale=0.4)
    ff.dense("h2", "o")
    ff.output("y", "o")
    rec = ntg.Graph(f"recurrent{n}", seed=0)
    rec.input("x", 100)
    rec.population("h", ntg.LIF(tau_mem=20e-3, v_th=1.0), n)
    rec.dense("x", "h", scale=0.5)
    rec.dense("h", "h", scale=1.0 / np.sqrt(n))
    rec.output("s", "h")
    return {"feedforward 100-200-100-10": ff, f"recurrent {n} LIF, {n}x{n} Dense": rec}


def timed(fn: Callable[[np.ndarray], object], x1: np.ndarray, x2: np.ndarray, repeats: int) -> tuple[float, float]:
    """(steady-state steps/s, seconds of one T-step run): a warm-up, then the fastest of ``repeats`` runs each."""
    fn(x1[:2])
    best1 = best2 = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x1)
        t1 = time.perf_counter()
        fn(x2)
        t2 = time.perf_counter()
        best1, best2 = min(best1, t1 - t0), min(best2, t2 - t1)
    extra = best2 - best1
    steps = x2.shape[0] - x1.shape[0]
    return (steps / extra if extra > 0 else float("nan")), best1


def accuracy_report(epochs: int, qat_epochs: int) -> dict:
    """Train on MNIST-1D in torch, then evaluate the same network on every target (see the module docstring)."""
    from mnist1d.data import get_dataset_args, make_dataset

    from backends.torchsim.loihi import lower_loihi

    torch.manual_seed(0)
    data = make_dataset(get_dataset_args())
    tail = 5  # zero steps after the sequence: the pipelined readout sees the input two steps later

    def encode(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x.T[:, :, None] / 2.0, np.zeros((tail, x.shape[0], 1))])

    x_train, y_train = encode(data["x"]), torch.tensor(data["y"])
    x_test, y_test = encode(data["x_test"]), np.asarray(data["y_test"])
    g = ntg.Graph("mnist1d", seed=0)
    g.input("x", 1)
    g.population("h", ntg.LIF(tau_mem=10e-3, v_th=1.0), 128)
    g.dense("x", "h", scale=2.0)
    g.dense("h", "h", scale=0.1)
    g.population("o", ntg.LI(tau_mem=20e-3), 10)
    g.dense("h", "o", scale=0.3)
    g.output("y", "o")

    def logits(y) -> torch.Tensor:
        y = torch.as_tensor(y)
        return y[-20:].mean(0)

    def train(model, n_epochs: int, lr: float) -> None:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        xt = torch.tensor(x_train, dtype=next(model.parameters()).dtype)
        for _ in range(n_epochs):
            perm = torch.randperm(len(y_train))
            for i in range(0, len(perm), 100):
                idx = perm[i:i + 100]
                loss = torch.nn.functional.cross_entropy(5.0 * logits(model(xt[:, idx]).outputs["y"]), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()

    def acc(y) -> float:
        return float(np.mean(np.asarray(logits(y).argmax(1)) == y_test))

    t0 = time.perf_counter()
    model = ntg.compile(g, "torch", dt=DT, timing="pipelined")
    train(model, epochs, 5e-3)
    trained = model.to_graph()
    out: dict = {"train_s": time.perf_counter() - t0}
    with torch.no_grad():
        out["torch float32"] = acc(model(torch.tensor(x_test, dtype=torch.float32)).outputs["y"])
    for precision in ("float", "fixed"):
        t0 = time.perf_counter()
        extra = {"quantize": {"input_scale": 64.0}} if precision == "fixed" else {}
        runner = ntg.compile(trained, "lava", dt=DT, timing="pipelined", precision=precision, max_replicas=250, **extra)
        out[f"lava {precision}"] = acc(runner.run(x_test)["y"])
        out[f"lava {precision} s"] = time.perf_counter() - t0
    opts = CompileOptions(dt=DT, timing="pipelined")
    loihi = lower_loihi(quantize(prepare(trained, opts), dt=DT, input_scale=64.0), opts)
    with torch.no_grad():
        out["torch loihi"] = acc(loihi(x_test).outputs["y"])
    if qat_epochs:
        train(loihi, qat_epochs, 1e-3)
        with torch.no_grad():
            out["torch loihi after QAT"] = acc(loihi(x_test).outputs["y"])
        runner = ntg.compile(loihi.to_graph(), "lava", dt=DT, timing="pipelined", precision="fixed",
                             max_replicas=250, quantize={"input_scale": 64.0})
        out["lava fixed after QAT"] = acc(runner.run(x_test)["y"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--neurons", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (Lava uses one process per process)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per target; the fastest counts (shared machines)")
    ap.add_argument("--accuracy", action="store_true", help="train on MNIST-1D and compare test accuracies")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--qat-epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.accuracy:
        res = accuracy_report(args.epochs, args.qat_epochs)
        print("\nMNIST-1D test accuracy of one trained network (1000 test sequences)\n")
        print("| target | test accuracy |")
        print("|---|---:|")
        for k, v in res.items():
            if not k.endswith("s"):
                print(f"| {k} | {100 * v:.1f}% |")
        print()
        print(json.dumps(res))
        return
    from backends.torchsim.loihi import lower_loihi

    rng = np.random.default_rng(0)
    rows, results = [], {}
    for name, g in networks(args.neurons).items():
        x1 = (rng.random((args.steps, 1, 100)) < 0.1).astype(np.float64)
        x2 = (rng.random((2 * args.steps, 1, 100)) < 0.1).astype(np.float64)
        xb1 = (rng.random((args.steps, args.batch, 100)) < 0.1).astype(np.float64)
        xb2 = (rng.random((2 * args.steps, args.batch, 100)) < 0.1).astype(np.float64)
        res: dict[str, dict] = {}
        for precision in ("float", "fixed"):
            runner = ntg.compile(g, "lava", dt=DT, timing="pipelined", precision=precision)
            sps, first = timed(runner.run, x1, x2, args.repeats)
            res[f"lava {precision}"] = {"steps_per_s": sps, "run_s": first, "batch": 1}
        module = ntg.compile(g, "torch", dt=DT, timing="pipelined")
        with torch.no_grad():
            sps, first = timed(lambda x: module(x), x1, x2, args.repeats)
        res["torch float32"] = {"steps_per_s": sps, "run_s": first, "batch": 1}
        opts = CompileOptions(dt=DT, timing="pipelined")
        loihi = lower_loihi(quantize(prepare(g, opts), dt=DT), opts)
        with torch.no_grad():
            sps, first = timed(lambda x: loihi(x), x1, x2, args.repeats)
            res["torch loihi"] = {"steps_per_s": sps, "run_s": first, "batch": 1}
            sps, first = timed(lambda x: loihi(x), xb1, xb2, args.repeats)
            res[f"torch loihi x{args.batch}"] = {"steps_per_s": sps, "run_s": first, "batch": args.batch,
                                                  "sample_steps_per_s": sps * args.batch}
        base = res["lava fixed"]["steps_per_s"]
        for target, r in res.items():
            r["vs_lava_fixed"] = r["steps_per_s"] * r["batch"] / base
            rows.append((name, target, r))
        results[name] = res

    print(f"\nLava (Loihi2SimCfg, CPU) vs torch backend; T={args.steps} steps, torch threads={args.threads}\n")
    print("| network | target | batch | steps/s | sample-steps/s vs lava fixed | one T-step run (s) |")
    print("|---|---|---:|---:|---:|---:|")
    for name, target, r in rows:
        print(f"| {name} | {target} | {r['batch']} | {r['steps_per_s']:.0f} | {r['vs_lava_fixed']:.1f}x | "
              f"{r['run_s']:.2f} |")
    print()
    print(json.dumps({"steps": args.steps, "neurons": args.neurons, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
