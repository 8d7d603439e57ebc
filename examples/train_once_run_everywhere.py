"""Train once, run on every simulator: a Dale's-law spiking digits classifier on torch, ONNX, NIR peers, Brian2 and Lava.

1. Train (BPTT, torch backend) a feed-forward spiking network on scikit-learn's
   8x8 digits: 64 rate-coded inputs -> 100 LIF (Dale's law: 80% excitatory) ->
   10 LIF; the class is the output neuron with the most spikes.  The network
   keeps to what every simulator can run: zero reset, ``v_leak = 0``, ``r = 1``,
   one threshold and one time constant per population, no recurrence, no LI.
2. Export it: ``digits.ntg`` (ntgraph), ``digits.nir`` (NIR) and
   ``digits.onnx`` (ONNX, sequence mode), and read the NIR file back.
3. Run the test set on every simulator with ``ntgraph.compare`` and print the
   accuracy of each, and how far its spikes are from the reference:

   * ``timing="sync"`` (the convention under which NIR files mean one thing):
     torch, ONNX (onnxruntime), Brian2, snnTorch and Norse (through NIR and each
     peer's own importer);
   * ``timing="pipelined"`` (every projection takes one step, as on Loihi): torch,
     Brian2, Lava floating point and Lava fixed point (Loihi 2 arithmetic).

   Two silent steps end every input, so the pipelined network, whose output
   arrives two steps later, sees the same input as the synchronous one.

Also runs the exported files themselves: ``digits.onnx`` in onnxruntime and the
graph read back from ``digits.nir`` in the torch backend.

Run:
  .venv/bin/python examples/train_once_run_everywhere.py --smoke     # seconds, few samples, no Lava
  nice .venv/bin/python examples/train_once_run_everywhere.py         # full, a few minutes
  options: --epochs N --test-samples N --dtype float32|float64 --out DIR --files DIR
           --simulators-sync a,b --simulators-pipelined a,b
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import torch

import ntgraph as ntg
from ntgraph._atomic import atomic_write
from ntgraph.compare import compare
from ntgraph.data import load_digits
from ntgraph.encoding import rate_encode

DT = 1e-3
STEPS = 20   # steps of rate-coded input
TAIL = 2     # silent steps after the input (the pipelined readout is two steps late)
MAX_RATE_HZ = 400.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNC = ("torch", "onnx", "brian2", "snntorch", "norse")
PIPELINED = ("torch", "onnx", "brian2", "lava-float", "lava-fixed")


def build(seed: int = 0, n_hidden: int = 100) -> ntg.Graph:
    """64 inputs -> ``n_hidden`` LIF (Dale's law, 80% E) -> 10 LIF; zero reset, ``r = 1``, ``tau = 10 ms``."""
    g = ntg.Graph("digits-dale", seed=seed)
    g.input("x", 64)
    g.population("hidden", ntg.LIF(tau_mem=10e-3, v_th=1.0, reset="zero"), n_hidden, excitatory=0.8)
    g.population("out", ntg.LIF(tau_mem=10e-3, v_th=1.0, reset="zero"), 10)
    g.dense("x", "hidden", scale=4.0, bias=None)
    g.dense("hidden", "out", scale=8.0 / np.sqrt(n_hidden))
    g.output("y", "out")
    return g


def encode(x: np.ndarray, seed: int) -> np.ndarray:
    """Pixels in [0, 1] -> Bernoulli spikes ``[STEPS + TAIL, batch, 64]`` (frozen noise from ``seed``)."""
    spikes = rate_encode(x, STEPS, max_rate_hz=MAX_RATE_HZ, dt=DT, rng=seed)  # [T, batch, 64]
    return np.concatenate([spikes, np.zeros((TAIL, *spikes.shape[1:]), np.float32)])


def train(graph: ntg.Graph, data: Any, epochs: int, seed: int, progress: bool, lr: float = 5e-2) -> ntg.Graph:
    """BPTT with a cross-entropy on the output spike counts (the same readout every simulator is scored on)."""
    torch.manual_seed(seed)
    model = ntg.compile(graph, "torch", dt=DT)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x_train, y_train = data.train.x, data.train.y
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        total, correct = 0.0, 0
        for start in range(0, len(order), 64):
            idx = order[start:start + 64]
            x = torch.as_tensor(encode(x_train[idx], seed=int(rng.integers(2**31))))
            counts = model(x)["y"].sum(0)  # [batch, 10] spike counts
            labels = torch.as_tensor(y_train[idx])
            loss = torch.nn.functional.cross_entropy(counts, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            correct += int((counts.argmax(1) == labels).sum())
        if progress:
            print(f"epoch {epoch}: loss {total / len(order):.4f}, train accuracy (spike count) {correct / len(order):.3f}",
                  flush=True)
    trained = model.to_graph()
    ntg.validate(trained)  # Dale's law holds in the trained IR
    return trained


def count_accuracy(spikes: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose most-spiking output neuron (ties: lowest index) is the label."""
    return float(np.mean(np.argmax(spikes.sum(0), axis=-1) == labels))


def run_files(graph: ntg.Graph, x: np.ndarray, labels: np.ndarray, folder: str, dtype: str) -> dict[str, Any]:
    """Export to .ntg, .nir and .onnx, then score the exported files themselves."""
    from backends.nirio import from_nir, to_nir
    from backends.onnxio import run_onnx, to_onnx

    paths = {fmt: os.path.join(folder, f"digits.{fmt}") for fmt in ("ntg", "nir", "onnx")}
    ntg.save(graph, paths["ntg"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_nir(graph, paths["nir"], dt=DT)
    to_onnx(graph, paths["onnx"], dt=DT, mode="sequence", dtype=dtype)
    out: dict[str, Any] = {"files": {k: os.path.relpath(p, folder) for k, p in paths.items()},
                           "bytes": {k: os.path.getsize(p) for k, p in paths.items()}}
    out["onnx file (onnxruntime)"] = count_accuracy(run_onnx(paths["onnx"], {"x": x.astype(dtype)})["y"], labels)
    back = from_nir(paths["nir"])
    y = ntg.simulate(back, {"x": x.astype(dtype)}, target="torch", dt=DT, dtype=dtype)["y"]
    out["nir file read back (torch)"] = count_accuracy(np.asarray(y), labels)
    return out


def table(report: Any) -> list[dict[str, Any]]:
    rows = []
    for r in report.results:
        m, name = r.metrics, r.name
        rows.append({"simulator": name, "status": r.status, "precision": r.precision,
                     "accuracy": m.get("accuracy"), "agreement": m.get("agreement"),
                     "spike_count_r": m.get("spike_count_correlation"), "reason": r.reason[:200] if r.reason else "",
                     "per_step_s": r.per_step_s})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 epoch, 16 test samples, no Lava (seconds)")
    parser.add_argument("--epochs", type=int, default=None, help="default 1 (smoke) or 15")
    parser.add_argument("--test-samples", type=int, default=None, help="default 16 (smoke) or the whole test split")
    parser.add_argument("--simulators-sync", default=",".join(SYNC))
    parser.add_argument("--simulators-pipelined", default=None,
                        help=f"default {','.join(PIPELINED)} (smoke: torch,brian2)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="arithmetic of torch (the reference), ONNX and the NIR read-back (default float32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="folder for the JSON and the compare reports (default docs/experiments/data/train-once; "
                             "nothing is written in smoke mode)")
    parser.add_argument("--files", default=None,
                        help="folder for digits.ntg/.nir/.onnx and the test inputs x.npy, labels.npy (default: temporary)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    epochs = args.epochs or (1 if args.smoke else 15)
    pipelined = args.simulators_pipelined or ("torch,brian2" if args.smoke else ",".join(PIPELINED))
    out_dir = args.out or (None if args.smoke else os.path.join(ROOT, "docs", "experiments", "data", "train-once"))
    tmp = tempfile.TemporaryDirectory() if args.files is None else None
    files_dir = args.files or tmp.name
    os.makedirs(files_dir, exist_ok=True)

    data = load_digits(seed=args.seed)
    t0 = time.perf_counter()
    trained = train(build(args.seed), data, epochs, args.seed, progress=not args.smoke)
    train_s = time.perf_counter() - t0
    n_test = args.test_samples or (16 if args.smoke else len(data.test))
    x = encode(data.test.x[:n_test], seed=10_000 + args.seed)
    labels = data.test.y[:n_test].astype(np.int64)

    summary: dict[str, Any] = {"network": "64 -> 100 LIF (Dale 80% E) -> 10 LIF, zero reset, tau 10 ms, dt 1 ms",
                               "epochs": epochs, "train_s": round(train_s, 1), "test_samples": int(n_test),
                               "steps": STEPS + TAIL, "dtype": args.dtype, "reports": {}}
    summary["exported"] = run_files(trained, x, labels, files_dir, args.dtype)
    np.save(os.path.join(files_dir, "x.npy"), x)
    np.save(os.path.join(files_dir, "labels.npy"), labels)
    for timing, sims in (("sync", args.simulators_sync), ("pipelined", pipelined)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = compare(trained, x, sims, dt=DT, timing=timing, labels=labels, dtype=args.dtype)
        print(f"\n== timing={timing} ==")
        print(report)
        if out_dir:
            report.write(os.path.join(out_dir, f"compare-{timing}"), plots=False)
        summary["reports"][timing] = table(report)
    print("\nexported files:", {k: v for k, v in summary["exported"].items() if "(" in k})
    print(f"\n{'timing':10s} {'simulator':11s} {'status':9s} {'accuracy':>8s} {'agreement':>9s}")
    for timing, rows in summary["reports"].items():
        for r in rows:
            acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
            agr = "-" if r["agreement"] is None else f"{r['agreement']:.4f}"
            print(f"{timing:10s} {r['simulator']:11s} {r['status']:9s} {acc:>8s} {agr:>9s}")
    if args.files:
        print(f"\nthe same from the command line:\n  ntgraph compare {files_dir}/digits.ntg --input {files_dir}/x.npy "
              f"--labels {files_dir}/labels.npy --dt {DT} --dtype {args.dtype} --simulators {args.simulators_sync}")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with atomic_write(os.path.join(out_dir, "results.json"), "w") as fh:
            json.dump(summary, fh, indent=2, default=float)
    if tmp is not None:
        tmp.cleanup()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
