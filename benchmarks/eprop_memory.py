"""e-prop against BPTT: memory of one training step as the number of steps T grows (issue 10).

Run (from the repository root; the T=10000 points take several minutes each on a loaded 2-core machine):

    .venv/bin/python benchmarks/eprop_memory.py [--steps 100,1000,10000] [--batch 16] [--hidden 128]

The network is the suite's recurrent SHD-shaped one: 700 inputs -> H LIF
(recurrent, no self-connections) -> 20 LI readouts, float32, cross-entropy of
the readout at every step (``CrossEntropyOverTime``), one ``train_step`` with
Adam.  Each (algorithm, T) runs in a fresh subprocess of this script, which
reports two memory figures:

* **saved MiB**: the peak bytes autograd holds for backward passes during the
  step, tracked exactly with ``torch.autograd.graph.saved_tensors_hooks`` (each
  saved tensor is counted in when saved and out when autograd frees it).  This
  is BPTT's activation memory; e-prop only builds the one-step graph of the
  learning signal.
* **step MiB**: the rise of the subprocess's peak resident memory
  (``ru_maxrss``) during the step over its peak before it (the input batch
  ``[T, B, 700]`` is created before, so it is not counted).  This includes
  e-prop's eligibility traces (``O(B*H*(700+H))``, independent of T) and the
  simulation buffers; it is coarse (the allocator may reuse freed memory).

Results: ``benchmarks/results/<date>-<host>-eprop_memory.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Optional

from _results import ROOT, machine_info, peak_rss_mb, write_results
from suite import DT, N_IN, N_OUT, eprop_graph



def job(algo: str, steps: int, batch: int, hidden: int, threads: int) -> dict:
    """One training step in this process; returns its timings and memory figures."""
    import torch

    import ntgraph as ntg
    from backends.torchsim.learning.algorithms import BPTT
    from backends.torchsim.learning.eprop import EProp
    from backends.torchsim.learning.losses import CrossEntropyOverTime

    torch.set_num_threads(threads)
    model = ntg.compile(eprop_graph(hidden), "torch", dt=DT, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(steps, batch, N_IN, generator=gen) < 0.05).float()
    labels = torch.randint(0, N_OUT, (batch,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    algorithm = EProp() if algo == "eprop" else BPTT()
    objective = CrossEntropyOverTime(output="y", reduce="mean")
    tally = {"live": 0, "peak": 0}

    class Held:
        def __init__(self, t: "torch.Tensor") -> None:
            self.t, self.n = t, t.numel() * t.element_size()
            tally["live"] += self.n
            tally["peak"] = max(tally["peak"], tally["live"])

        def __del__(self) -> None:
            tally["live"] -= self.n

    before = peak_rss_mb()
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(Held, lambda h: h.t):
        algorithm.train_step(model, x, labels, objective, opt)
    elapsed = time.perf_counter() - t0
    peak = peak_rss_mb()
    return {"algorithm": algo, "T": steps, "batch": batch, "hidden": hidden, "step_s": elapsed,
            "saved_mb": tally["peak"] / 2 ** 20, "rss_before_mb": before, "peak_rss_mb": peak,
            "step_mb": peak - before, "trace_mb": getattr(algorithm, "trace_bytes", 0) / 2 ** 20}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100,1000,10000", help="comma-separated T values")
    parser.add_argument("--algorithms", default="bptt,eprop")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per subprocess")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--job", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        spec = json.loads(args.job)
        print(json.dumps(job(**spec)))
        return 0
    rows = []
    for steps in [int(s) for s in args.steps.split(",")]:
        for algo in args.algorithms.split(","):
            spec = {"algo": algo, "steps": steps, "batch": args.batch, "hidden": args.hidden, "threads": args.threads}
            proc = subprocess.run([sys.executable, __file__, "--job", json.dumps(spec)], capture_output=True, text=True,
                                  timeout=args.timeout, cwd=ROOT)
            if proc.returncode != 0:
                rows.append({**spec, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    data = {"benchmark": "eprop_memory", "machine": machine_info(args.threads), "rows": rows}
    m = data["machine"]
    lines = [f"# e-prop vs BPTT memory ({m['date_utc']}, {m['cpu']}, {m['logical_cores']} cores, "
             f"load {m['load_average_at_start']}, torch {m['torch']}, {args.threads} threads, float32)", "",
             f"Recurrent 700 -> {args.hidden} LIF -> 20 LI, batch {args.batch}, one training step per fresh subprocess.", "",
             "| T | algorithm | step s | saved for backward MiB (peak) | peak RSS rise MiB | e-prop traces MiB | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['steps']} | {r['algo']} | error: {r['error']} | | | | |")
        else:
            lines.append(f"| {r['T']} | {r['algorithm']} | {r['step_s']:.1f} | {r['saved_mb']:.1f} | {r['step_mb']:.0f} | "
                         f"{r['trace_mb']:.1f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", f"Command: `.venv/bin/python benchmarks/eprop_memory.py --steps {args.steps} --batch {args.batch} "
              f"--hidden {args.hidden}`", ""]
    md = "\n".join(lines)
    print(md)
    print("written:", *write_results("eprop_memory", data, md, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
