"""Calibrate the event-driven input projection: dense ``F.linear`` against :class:`EventMatmul` by input density.

Run (from the repository root; a few minutes):

    .venv/bin/python benchmarks/event_threshold.py [--rows 6400] [--n-pre 700] [--hidden 128,512]

For binary inputs ``x`` (``rows x n_pre``, each entry 1 with probability
``density``) and weights ``W`` (``hidden x n_pre``), it times (medians of
``--repeats`` after one warm-up, float32, ``--threads`` threads) the forward
``x @ W^T`` and the weight gradient ``dL/dW = g^T x`` both ways: dense GEMM, and
the event path of ``backends/torchsim/projections.py`` (embedding-bag sums over
the nonzero entries, index extraction included).  The largest density at which
the event path is faster for forward + weight gradient is the crossover to set
as ``EVENT_DENSITY_THRESHOLD`` (or per model with ``set_event_driven(model,
"auto", threshold=...)``).  Results: ``benchmarks/results/<date>-<host>-event_threshold.{md,json}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Optional

from _results import ROOT, machine_info, write_results


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6400, help="T*batch")
    parser.add_argument("--n-pre", type=int, default=700)
    parser.add_argument("--hidden", default="128,512")
    parser.add_argument("--densities", default="0.005,0.01,0.02,0.05,0.1,0.2")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import torch

    from backends.torchsim.projections import EventMatmul

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for hidden in [int(h) for h in args.hidden.split(",")]:
        w = torch.randn(hidden, args.n_pre, generator=gen, requires_grad=True)
        for density in [float(d) for d in args.densities.split(",")]:
            x = (torch.rand(args.rows, args.n_pre, generator=gen) < density).float()
            g = torch.randn(args.rows, hidden, generator=gen)
            dense_f = _median_ms(lambda: x @ w.detach().t(), args.repeats)
            dense_b = _median_ms(lambda: g.t() @ x, args.repeats)
            event_f = _median_ms(lambda: EventMatmul.apply(x, w.detach()), args.repeats)

            def event_both() -> None:
                y = EventMatmul.apply(x, w)
                torch.autograd.grad(y, w, g)

            event_fb = _median_ms(event_both, args.repeats)
            rows.append({"hidden": hidden, "density": density, "dense_forward_ms": dense_f, "dense_wgrad_ms": dense_b,
                         "event_forward_ms": event_f, "event_forward_wgrad_ms": event_fb,
                         "speedup_forward_wgrad": (dense_f + dense_b) / event_fb})
            print(rows[-1], flush=True)
    crossover = {}
    for hidden in sorted({r["hidden"] for r in rows}):
        wins = [r["density"] for r in rows if r["hidden"] == hidden and r["speedup_forward_wgrad"] > 1.0]
        crossover[hidden] = max(wins) if wins else 0.0
    data = {"benchmark": "event_threshold", "machine": machine_info(args.threads), "rows_of_x": args.rows,
            "n_pre": args.n_pre, "rows": rows, "crossover_density": crossover}
    m = data["machine"]
    lines = [f"# Event-driven vs dense input projection ({m['date_utc']}, {m['cpu']}, {m['logical_cores']} cores, "
             f"load {m['load_average_at_start']}, torch {m['torch']}, {args.threads} threads, float32)", "",
             f"x: {args.rows} x {args.n_pre} binary; medians of {args.repeats} (ms).", "",
             "| hidden | density | dense fwd | dense wgrad | event fwd | event fwd+wgrad | speed-up fwd+wgrad |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['hidden']} | {r['density']:.3f} | {r['dense_forward_ms']:.1f} | {r['dense_wgrad_ms']:.1f} | "
              f"{r['event_forward_ms']:.1f} | {r['event_forward_wgrad_ms']:.1f} | {r['speedup_forward_wgrad']:.2f} |"
              for r in rows]
    lines += ["", "Largest density where the event path wins (forward + weight gradient): "
              + ", ".join(f"H={h}: {d:g}" for h, d in crossover.items()), "",
              "Command: `.venv/bin/python benchmarks/event_threshold.py`", ""]
    md = "\n".join(lines)
    print(md)
    print("written:", *write_results("event_threshold", data, md, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
