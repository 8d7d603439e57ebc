"""Estimated against measured memory of compiled networks (docs/memory.md).

Each case runs in a fresh Python process (``--child``), on one thread, with
glibc told to serve every allocation of 8 KiB or more by ``mmap``
(``MALLOC_MMAP_THRESHOLD_=8192``; ``NTGRAPH_MMAP_THRESHOLD`` overrides it), so freed tensors leave the resident set
at once.  The child builds the graph (numpy), runs a warm-up of the same mode
on a tiny network (kernel and autograd-engine start-up), then:

1. reads its resident set size ``rss0`` (``/proc/self/statm``);
2. creates the inputs and compiles the network; resets the kernel's peak RSS
   counter (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0);
3. runs one forward (inference, under ``torch.no_grad``), or one training
   step of the mode (forward, backward, Adam step when ``--optimizer adam``);
4. reports ``VmHWM - rss0``: the peak the compiled network and its run added.

Compilation's own transient (float64 staging of parameters) is excluded, as in
the estimate.  Run: ``.venv/bin/python benchmarks/memory_check.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ntgraph  # noqa: E402
from ntgraph import ALIF, IF, LI, LIF, CubaLIF, Graph, RateUnit, WilsonCowan  # noqa: E402

DT = 1e-3


def dense_ff(n_in: int = 200, n_hid: int = 2000, n_out: int = 10) -> Graph:
    g = Graph("dense-ff", seed=1)
    g.input("x", n_in)
    g.population("h", LIF(tau_mem=0.02), n_hid)
    g.population("o", LI(tau_mem=0.02), n_out)
    g.dense("x", "h")
    g.dense("h", "o")
    g.output("y", "o")
    return g


def dense_rec(n_in: int = 100, n_hid: int = 1000, n_out: int = 10, model: Any = None) -> Graph:
    g = Graph("dense-rec", seed=1)
    g.input("x", n_in)
    g.population("h", model or LIF(tau_mem=0.02), n_hid)
    g.population("o", LI(tau_mem=0.02), n_out)
    g.dense("x", "h")
    g.dense("h", "h", delay=1)
    g.dense("h", "o")
    g.output("y", "o")
    return g


def dale_rec(n_in: int = 100, n_hid: int = 1000, n_out: int = 10) -> Graph:
    g = Graph("dale-rec", seed=1)
    g.input("x", n_in)
    g.population("h", LIF(tau_mem=0.02), n_hid, excitatory=0.8)
    g.population("o", LI(tau_mem=0.02), n_out)
    g.dense("x", "h")
    g.dense("h", "h", p=0.2, no_self=True)
    g.dense("h", "o")
    g.output("y", "o")
    g.output("spikes", "h")
    return g


def sparse_rec(n_hid: int = 10_000, p: float = 0.001, n_in: int = 100, n_out: int = 10) -> Graph:
    g = Graph(f"sparse-rec-{n_hid}", seed=1)
    g.input("x", n_in)
    g.population("h", LIF(tau_mem=0.02), n_hid, excitatory=0.8)
    g.population("o", LI(tau_mem=0.02), n_out)
    g.sparse("x", "h", p=min(1.0, 20 / n_in))
    g.sparse("h", "h", p=p)
    g.sparse("h", "o", p=min(1.0, 100 / n_hid))
    g.output("y", "o")
    return g


def cuba_alif(n_in: int = 100, n_hid: int = 1000, n_out: int = 10) -> Graph:
    g = Graph("cuba-alif", seed=1)
    g.input("x", n_in)
    g.population("c", CubaLIF(tau_mem=0.02, tau_syn=0.005), n_hid)
    g.population("a", ALIF(tau_mem=0.02, tau_adapt=0.2, beta=0.1), n_hid)
    g.population("o", LI(tau_mem=0.02), n_out)
    g.dense("x", "c")
    g.dense("c", "a")
    g.dense("a", "a", delay=1)
    g.dense("a", "o")
    g.output("y", "o")
    return g


SINGLE_MODELS = {
    "LIF": lambda: LIF(tau_mem=0.02),
    "LI": lambda: LI(tau_mem=0.02),
    "CubaLIF": lambda: CubaLIF(tau_mem=0.02, tau_syn=0.005),
    "ALIF": lambda: ALIF(tau_mem=0.02, tau_adapt=0.2, beta=0.1),
    "IF": lambda: IF(r=1000.0),
    "WilsonCowan": lambda: WilsonCowan(tau=0.02),
    "RateUnit": lambda: RateUnit(tau=0.02),
}


def single(model: str, n: int, recurrent: bool = False) -> Graph:
    """x (50) -> one population of ``model`` (optionally with a dense self-projection) -> LI (2)."""
    g = Graph(f"{model}-{n}{'-rec' if recurrent else ''}", seed=1)
    g.input("x", 50)
    g.population("h", SINGLE_MODELS[model](), n)
    g.dense("x", "h")
    if recurrent:
        g.dense("h", "h", delay=1)
    g.population("o", LI(tau_mem=0.02), 2)
    g.dense("h", "o")
    g.output("y", "o")
    return g


def chain(first: str, second: str, n: int) -> Graph:
    """x (50) -> ``first`` (n) -> ``second`` (n) -> LI (2): a population whose trajectory gets a gradient."""
    g = Graph(f"chain-{first}-{second}-{n}", seed=1)
    g.input("x", 50)
    g.population("h1", SINGLE_MODELS[first](), n)
    g.population("h2", SINGLE_MODELS[second](), n)
    g.population("o", LI(tau_mem=0.02), 2)
    g.dense("x", "h1")
    g.dense("h1", "h2")
    g.dense("h2", "o")
    g.output("y", "o")
    return g


def network(name: str) -> Graph:
    """A network by name: one of NETWORKS, or ``single:MODEL:N[:rec]``."""
    if name.startswith("chain:"):
        _, first, second, n = name.split(":")
        return chain(first, second, int(n))
    if name.startswith("single:"):
        _, model, n, *rec = name.split(":")
        return single(model, int(n), bool(rec))
    return NETWORKS[name]()


NETWORKS: dict[str, Callable[[], Graph]] = {
    "dense-ff": dense_ff,
    "dense-rec": dense_rec,
    "dale-rec": dale_rec,
    "cuba-alif": cuba_alif,
    "sparse-rec-10k": lambda: sparse_rec(10_000, 0.001),
    "sparse-rec-100k": lambda: sparse_rec(100_000, 0.0001),
}

# (network, mode, batch, steps, dtype, window)
CASES = [
    ("dense-ff", "inference", 32, 200, "float32", None),
    ("dense-ff", "bptt", 32, 200, "float32", None),
    ("dense-rec", "inference", 32, 500, "float32", None),
    ("dense-rec", "bptt", 16, 200, "float32", None),
    ("dense-rec", "tbptt", 16, 400, "float32", 50),
    ("dense-rec", "eprop", 8, 100, "float32", None),
    ("dense-rec", "bptt", 16, 200, "bfloat16", None),
    ("single:WilsonCowan:2000:rec", "bptt", 16, 200, "float32", None),
    ("single:IF:2000", "bptt", 16, 200, "float32", None),
    ("dale-rec", "bptt", 16, 200, "float32", None),
    ("cuba-alif", "bptt", 16, 200, "float32", None),
    ("cuba-alif", "inference", 16, 500, "float64", None),
    ("sparse-rec-10k", "inference", 16, 200, "float32", None),
    ("sparse-rec-10k", "bptt", 8, 100, "float32", None),
    ("sparse-rec-100k", "inference", 8, 100, "float32", None),
    ("sparse-rec-100k", "bptt", 4, 50, "float32", None),
]
QUICK = [0, 1, 3, 4, 5, 7, 8, 10, 12, 13]


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _run(graph: Graph, mode: str, batch: int, steps: int, dtype: str, window: Any, optimizer: Any) -> dict[str, int]:
    import torch

    import backends.torchsim.learning as L

    tdtype = getattr(torch, dtype)
    gc.collect()
    rss0 = _rss()
    n_in = graph.node_size(graph.inputs[0])
    x = (torch.rand(steps, batch, n_in) < 0.05).to(tdtype)
    module = ntgraph.compile(graph, "torch", dt=DT, dtype=tdtype)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad]) if optimizer == "adam" else None
    gc.collect()
    model_bytes = _rss() - rss0
    _reset_hwm()
    if mode == "inference":
        with torch.no_grad():
            module(x)
    else:
        out = graph.outputs[0]
        objective = L.CrossEntropyOverTime(output=out, reduce="mean")
        target = torch.zeros(batch, dtype=torch.long)
        algo = {"bptt": L.BPTT(), "tbptt": L.TBPTT(window=window or steps), "eprop": L.EProp()}[mode]
        algo.train_step(module, x, target, objective, opt)
    peak = _hwm() - rss0
    return {"measured": int(peak), "model_rss": int(model_bytes)}


def child(cases: list) -> None:
    """Measure each case in turn (one JSON line each); each starts from a fresh baseline."""
    import torch

    torch.set_num_threads(1)
    for name, mode, batch, steps, dtype, window, optimizer in cases:
        graph = network(name)
        # warm-up on a tiny network: kernel initialisation, autograd engine, allocator arenas
        _run(dense_rec(5, 8, 2), mode, 2, 4, dtype, 2 if window else None, optimizer)
        gc.collect()
        print(json.dumps(_run(graph, mode, batch, steps, dtype, window, optimizer)), flush=True)
        del graph
        gc.collect()


def measure_many(cases: list, optimizer: Any = None) -> list[dict[str, Any]]:
    """Run ``cases`` in one fresh process; return the estimate, the measurement and their ratio for each."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=os.environ.get("NTGRAPH_MMAP_THRESHOLD", "8192"), MALLOC_TRIM_THRESHOLD_="0", MALLOC_ARENA_MAX="1",
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps([[*c, optimizer] for c in cases])], env=env,
                         capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in out.stdout.strip().splitlines() if line.startswith("{")]
    results = []
    for case, measured in zip(cases, lines):
        name, mode, batch, steps, dtype, window = case
        report = ntgraph.estimate_memory(network(name), batch=batch, steps=steps, mode=mode, dtype=dtype,
                                         window=window, optimizer=optimizer)
        results.append({"case": case, "estimate": report.total, "report": report, **measured,
                        "ratio": report.total / max(measured["measured"], 1)})
    return results


def measure(case: tuple, optimizer: Any = None) -> dict[str, Any]:
    """Run one case in a fresh process (see :func:`measure_many`)."""
    return measure_many([case], optimizer)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description="estimated vs measured memory")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="only the smaller cases")
    ap.add_argument("--optimizer", default=None, choices=[None, "adam"])
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    from ntgraph.memory import format_bytes

    cases = [CASES[k] for k in QUICK] if args.quick else CASES
    print("| network | neurons | synapses | mode | batch | T | dtype | estimated | measured | estimate/measured |")
    print("|---|---:|---:|---|---:|---:|---|---:|---:|---:|")
    for case in cases:
        r = measure(case, args.optimizer)
        g = network(case[0])
        neurons = sum(g.node_size(p) for p in g.populations)
        synapses = sum(g[p].n_synapses for p in g.projections)
        mode = case[1] + (f" K={case[5]}" if case[5] else "")
        print(f"| {case[0]} | {neurons} | {synapses} | {mode} | {case[2]} | {case[3]} | {case[4]} | "
              f"{format_bytes(r['estimate'])} | {format_bytes(r['measured'])} | {r['ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
