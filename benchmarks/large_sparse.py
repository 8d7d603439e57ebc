"""A large sparse network: 100k LIF neurons with a fixed fan-in, simulated for 1000 steps (issue 10).

Run (from the repository root; on the 2-core development machine about 20 s at the defaults and 1.5 min
with ``--fan-in 1000``, 1.02e8 synapses, peak RSS 4.5 GiB):

    .venv/bin/python benchmarks/large_sparse.py [--neurons 100000] [--fan-in 100] [--steps 1000]

The network: ``--inputs`` Poisson inputs (rate ``--rate``) -> ``--neurons`` LIF
neurons, each receiving ``--input-fan-in`` input synapses and ``--fan-in``
recurrent synapses from randomly drawn neurons (connectivity
``fan_in / neurons``: 0.1% at the defaults, 1% with ``--fan-in 1000``), all
:class:`ntgraph.ir.Sparse` projections with int32 indices, so the torch backend keeps them as CSR
matrices with int32 indices (``backends/torchsim/projections.py``) and, in inference, touches only the
synapses of the neurons that spiked (``SparseProjection``'s event-driven forward).  Batch 1, float32, inference
(``torch.no_grad``), ``--threads`` intra-op threads.  The 1000 steps run in
calls of ``--chunk`` steps, each continuing from the previous call's state
(the result is the same as one call; only the stored output spikes are bounded).

Reported: graph build time, compile time, simulation steps per second, mean
firing rate and the peak resident memory of the process (``ru_maxrss``), written
to ``benchmarks/results/<date>-<host>-large_sparse.{md,json}``.
"""

from __future__ import annotations

import argparse
import time
from typing import Optional

import numpy as np

from _results import ROOT, machine_info, peak_rss_mb, write_results


def build_graph(neurons: int, fan_in: int, inputs: int, input_fan_in: int, seed: int = 0, chunk: int = 1 << 20):
    """The graph: fixed fan-in sparse projections drawn with numpy (no dense matrix anywhere).

    Indices are int32 (the IR keeps int32 synapse indices as given: 4 bytes each instead of 8) and the
    recurrent synapses are drawn ``chunk`` rows at a time, so no int64 or float64 temporary of the
    synapse count exists; the draws are the same numbers as one call would give.
    """
    import ntgraph as ntg

    rng = np.random.default_rng(seed)
    g = ntg.Graph("large-sparse", seed=seed)
    g.input("x", inputs)
    g.population("h", ntg.LIF(tau_mem=20e-3, v_th=1.0, reset="subtract"), neurons)
    post = np.repeat(np.arange(neurons, dtype=np.int32), input_fan_in)
    pre = rng.integers(0, inputs, post.size).astype(np.int32)
    g.sparse("x", "h", post_index=post, pre_index=pre,
             weight=rng.normal(3.0, 1.0, post.size).astype(np.float32), name="in")
    post = np.repeat(np.arange(neurons, dtype=np.int32), fan_in)
    pre = np.empty((neurons, fan_in), dtype=np.int32)
    rows = max(1, chunk // max(fan_in, 1))
    for r in range(0, neurons, rows):  # rows in CSR order
        pre[r:r + rows] = np.sort(rng.integers(0, neurons, (min(rows, neurons - r), fan_in)), axis=1)
    weight = np.empty(post.size, dtype=np.float32)
    for k in range(0, post.size, chunk):
        weight[k:k + chunk] = rng.normal(0.0, 1.0, min(chunk, post.size - k)).astype(np.float32) / np.sqrt(fan_in)
    g.sparse("h", "h", post_index=post, pre_index=pre.ravel(), weight=weight, name="rec")
    g.output("y", "h")
    return g


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=100_000)
    parser.add_argument("--fan-in", type=int, default=100, help="recurrent synapses per neuron")
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--input-fan-in", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.02, help="input spike probability per step")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import torch

    import ntgraph as ntg

    torch.set_num_threads(args.threads)
    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    graph = build_graph(args.neurons, args.fan_in, args.inputs, args.input_fan_in)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = ntg.compile(graph, "torch", dt=1e-3, dtype=torch.float32)
    compile_s = time.perf_counter() - t0
    del graph
    synapses = sum(int(m.weight.numel()) for m in model._proj.values())
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(args.steps, 1, args.inputs, generator=gen) < args.rate).float()
    state, spikes, chunk_times = None, 0.0, []
    rss_before_sim = peak_rss_mb()
    with torch.no_grad():
        for t in range(0, args.steps, args.chunk):
            c0 = time.perf_counter()
            res = model(x[t:t + args.chunk], state=state)
            chunk_times.append(time.perf_counter() - c0)
            state = res.state
            spikes += float(res["y"].sum())
    sim_s = sum(chunk_times)
    data = {
        "benchmark": "large_sparse", "machine": machine_info(args.threads),
        "config": {k: getattr(args, k) for k in ("neurons", "fan_in", "inputs", "input_fan_in", "rate", "steps", "chunk")},
        "synapses": synapses, "connectivity": args.fan_in / args.neurons,
        "build_s": build_s, "compile_s": compile_s, "simulate_s": sim_s, "steps_per_s": args.steps / sim_s,
        "chunk_s": chunk_times, "mean_rate_per_step": spikes / (args.steps * args.neurons),
        "peak_rss_mb": peak_rss_mb(), "rss_at_start_mb": rss_start, "rss_before_simulation_mb": rss_before_sim,
    }
    m = data["machine"]
    md = (
        f"# Large sparse network ({m['date_utc']}, {m['cpu']}, {m['logical_cores']} cores, load {m['load_average_at_start']}, "
        f"torch {m['torch']}, {args.threads} threads, float32)\n\n"
        "| neurons | recurrent fan-in | connectivity | synapses | steps | build s | compile s | simulate s | steps/s | "
        "spikes/neuron/step | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {args.neurons} | {args.fan_in} | {args.fan_in / args.neurons:.2%} | {synapses} | {args.steps} | {build_s:.1f} | "
        f"{compile_s:.1f} | {sim_s:.1f} | {data['steps_per_s']:.1f} | {data['mean_rate_per_step']:.4f} | "
        f"{data['peak_rss_mb']:.0f} |\n\nCommand: `.venv/bin/python benchmarks/large_sparse.py "
        f"--neurons {args.neurons} --fan-in {args.fan_in} --steps {args.steps}`\n"
    )
    print(md)
    paths = write_results(f"large_sparse-n{args.neurons}-k{args.fan_in}", data, md, args.out)
    print("written:", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
