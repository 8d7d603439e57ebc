"""onnxruntime inference throughput of the ONNX export against the torch backend, side by side.

For each network and batch size, the same graph runs (float32, CPU, no gradients)
on three engines in one process:

* ``torch``: the torch backend's SimulationModule (``ntgraph.compile(g, "torch")``);
* ``ort seq``: the sequence-mode export (one Scan over time) in onnxruntime;
* ``ort step``: the step-mode export, called once per time step from Python
  (the way an RNN cell is deployed), feeding the state back.

Before timing, every engine's outputs are checked against torch (spikes
identical, voltages within 1e-5).  Each timing is the median of ``--repeats``
runs after one warm-up; throughput is simulated steps x batch per second.
Both libraries get the same number of intra-op threads (``--threads``, default 1,
so the numbers do not depend on how busy the machine is).  Prints a markdown
table with ratios (engine time / torch time; < 1 means faster than torch) and
writes the rows as JSON next to this script (``--json`` to change the path).

Run:  .venv/bin/python benchmarks/bench_onnx.py [--steps 200] [--batches 1 32] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import torch

import ntgraph as ntg
from backends.onnxio import OnnxRunner, to_onnx
from ntgraph._atomic import atomic_write
from ntgraph.demo import DemoConfig, build_demo_graph

DT = 1e-3


def small_graph() -> ntg.Graph:
    """A keyword-spotting-sized SNN: 40 inputs -> 128 recurrent ALIF (Dale's law) -> 12 LI readouts."""
    g = ntg.Graph("alif-128", seed=0)
    g.input("x", 40)
    g.population("hid", ntg.ALIF(tau_mem=20e-3, tau_adapt=200e-3, beta=0.2, v_th=0.5), 128, excitatory=0.8)
    g.dense("x", "hid", scale=0.5)
    g.dense("hid", "hid", p=0.3, no_self=True, scale=0.3)
    g.population("out", ntg.LI(tau_mem=20e-3), 12)
    g.dense("hid", "out", scale=0.2)
    g.output("y", "out")
    g.output("spikes", "hid")
    return g


NETWORKS: dict[str, Callable[[], ntg.Graph]] = {
    "ALIF 40-128r-12": small_graph,
    "demo LIF 100-500r-10 (Dale, sparse)": lambda: build_demo_graph(DemoConfig()),
}


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_agree(g: ntg.Graph, got: dict, ref: dict) -> None:
    for key in g.outputs:
        have, want = np.asarray(got[key], dtype=np.float64), ref[key]
        spiking = getattr(g[g.source(key)], "model", None) is not None and g[g.source(key)].model.spiking
        if spiking and not np.array_equal(have, want):
            raise SystemExit(f"{key}: spikes differ from torch ({int((have != want).sum())} of {have.size})")
        if not spiking and not np.allclose(have, want, rtol=0, atol=1e-5):
            raise SystemExit(f"{key}: differs from torch by {np.abs(have - want).max():g}")


def measure(name: str, g: ntg.Graph, steps: int, batch: int, repeats: int, threads: int) -> dict:
    rng = np.random.default_rng(0)
    x = {i: (rng.random((steps, batch, g[i].size)) < 0.05).astype(np.float32) for i in g.inputs}
    module = ntg.compile(g, "torch", dt=DT, dtype=torch.float32)
    tx = {k: torch.from_numpy(v) for k, v in x.items()}

    def run_torch() -> dict:
        with torch.no_grad():
            res = module(tx)
        return {k: res[k].numpy() for k in g.outputs}

    seq = OnnxRunner(to_onnx(g, dt=DT, mode="sequence"), threads=threads)
    step = OnnxRunner(to_onnx(g, dt=DT, mode="step"), threads=threads)
    ref = {k: v.astype(np.float64) for k, v in run_torch().items()}
    check_agree(g, seq.run(x), ref)
    check_agree(g, step.run(x), ref)
    t_torch = timed(run_torch, repeats)
    t_seq = timed(lambda: seq.run(x), repeats)
    t_step = timed(lambda: step.run(x), repeats)
    work = steps * batch
    return {
        "network": name, "neurons": sum(g[p].size for p in g.populations), "steps": steps, "batch": batch,
        "torch_ms": 1e3 * t_torch, "ort_sequence_ms": 1e3 * t_seq, "ort_step_ms": 1e3 * t_step,
        "torch_steps_per_s": work / t_torch, "ort_sequence_steps_per_s": work / t_seq, "ort_step_steps_per_s": work / t_step,
        "sequence_over_torch": t_seq / t_torch, "step_over_torch": t_step / t_torch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and onnxruntime alike")
    parser.add_argument("--json", default=str(Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(name, build(), args.steps, batch, args.repeats, args.threads)
            for name, build in NETWORKS.items() for batch in args.batches]
    print(f"T={args.steps} steps, float32, CPU, {args.threads} thread(s); torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}; median of {args.repeats} runs. Ratio = time / torch time (< 1: faster).\n")
    print("| network | batch | torch ms | ort seq ms | ort step ms | seq / torch | step / torch | ort seq steps*batch/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['network']} | {r['batch']} | {r['torch_ms']:.1f} | {r['ort_sequence_ms']:.1f} | {r['ort_step_ms']:.1f} "
              f"| {r['sequence_over_torch']:.2f} | {r['step_over_torch']:.2f} | {r['ort_sequence_steps_per_s']:.3g} |")
    report = {"command": "benchmarks/bench_onnx.py", "args": vars(args), "machine": platform.machine(),
              "processor": platform.processor(), "torch": torch.__version__, "onnxruntime": ort.__version__, "rows": rows}
    with atomic_write(args.json, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
