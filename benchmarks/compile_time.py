"""Compile time of a graph of 1000 populations (issue 10).

Run (from the repository root; under a minute):

    .venv/bin/python benchmarks/compile_time.py [--populations 1000] [--size 16] [--repeats 3] [--profile]

The graph: an Input, a chain of ``--populations`` LIF populations of ``--size``
neurons joined by dense projections, plus about as many random forward dense
projections (``p_i -> p_j``, ``j > i + 1``; the graph stays acyclic) and one
Output: ~2000 projections at the defaults (the same graph as ``suite.py``'s
compile section).  Reported: the median time to build the graph with the
builder API, to ``ntgraph.compile(graph, "torch")`` it, and, separately, the
time of each compiler pass (``ntgraph.compiler.prepare``'s pass list).
``--profile`` prints the 25 most expensive functions (cProfile) of one compile.
Results go to ``benchmarks/results/<date>-<host>-compile_time.{md,json}``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from typing import Optional

from _results import ROOT, machine_info, peak_rss_mb, write_results
from suite import chain_graph



def build(populations: int, size: int, seed: int = 0):
    """The benchmark graph (see the module docstring; built by :func:`suite.chain_graph`)."""
    return chain_graph(populations, size, seed)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, default=1000)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import torch

    import ntgraph as ntg
    from ntgraph import compiler

    torch.set_num_threads(args.threads)
    ntg.compile(build(3, 4), "torch", dt=1e-3)  # imports and registry lookups outside the timed region
    build_s, compile_s = [], []
    graph = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        graph = build(args.populations, args.size)
        build_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ntg.compile(graph, "torch", dt=1e-3)
        compile_s.append(time.perf_counter() - t0)
    passes = _pass_times(compiler, graph)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        ntg.compile(graph, "torch", dt=1e-3)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    data = {"benchmark": "compile_time", "machine": machine_info(args.threads),
            "config": {"populations": args.populations, "size": args.size, "repeats": args.repeats},
            "projections": len(graph.projections), "build_s": statistics.median(build_s),
            "compile_s": statistics.median(compile_s), "build_times_s": build_s, "compile_times_s": compile_s,
            "pass_s": passes, "peak_rss_mb": peak_rss_mb()}
    m = data["machine"]
    rows = "".join(f"| {name} | {sec * 1e3:.0f} |\n" for name, sec in passes.items())
    md = (f"# Compile time ({m['date_utc']}, {m['cpu']}, {m['logical_cores']} cores, load {m['load_average_at_start']}, "
          f"torch {m['torch']})\n\n"
          f"{args.populations} LIF populations x {args.size} neurons, {data['projections']} dense projections; "
          f"medians of {args.repeats}.\n\n| step | s |\n|---|---|\n"
          f"| build the graph (builder API) | {data['build_s']:.2f} |\n"
          f"| `ntgraph.compile(graph, 'torch')` | {data['compile_s']:.2f} |\n\n"
          f"Passes (one run, ms):\n\n| pass | ms |\n|---|---|\n{rows}\n"
          f"Command: `.venv/bin/python benchmarks/compile_time.py --populations {args.populations}`\n")
    print(md)
    print("written:", *write_results("compile_time", data, md, args.out))
    return 0


def _pass_times(compiler, graph) -> dict[str, float]:
    """Seconds of validation, of each pass of the default pipeline (in order) and of the torch lowering."""
    from ntgraph.passes.core import default_pipeline
    from ntgraph.registry import get_backend
    from ntgraph.validate import validate

    options = compiler.CompileOptions(dt=1e-3)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    validate(graph, dt=options.dt, timing=options.timing)
    times["validate"] = time.perf_counter() - t0
    g = graph
    for p in default_pipeline():
        t0 = time.perf_counter()
        g = p(g, dt=options.dt, discretization=options.discretization, timing=options.timing)
        times[f"pass {p.name}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    get_backend("torch").lower(g, options)
    times["lower (torch)"] = time.perf_counter() - t0
    return times


if __name__ == "__main__":
    raise SystemExit(main())
