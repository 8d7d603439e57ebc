"""Interleaved timing of the SHD-shaped workloads: every implementation in one process, timed in turn.

``suite.py`` runs each (implementation, workload) row in a fresh subprocess,
minutes apart; on a shared machine whose load changes from minute to minute,
a row can land in a busy moment and its ratio to the others is then off by a
factor of several.  This script builds every implementation once and then
times one step of each in turn, ``--repeats`` rounds, so every implementation
sees the same load pattern.  It reports min and median per implementation,
the ratio of ntgraph's median to the fastest peer's median, and each median
over the workload's matmul limit: its matmul FLOPs (``suite.shd_flops``) at
the best rate of a ``1536 x 1536`` float32 GEMM timed in turn with the steps
in the same rounds (so under the same load).  It does not
measure memory (``suite.py`` does, per subprocess).

    .venv/bin/python benchmarks/interleaved.py --threads 2 --repeats 11
    .venv/bin/python benchmarks/interleaved.py --config 100x64x512 --only ntgraph,norse --modes rec-train

Output: a markdown table on stdout, and with ``--out FILE`` the same table
written to FILE (atomically), with the machine, versions and load average, and
the same rows as JSON beside it (FILE with the suffix ``.json``), which
``benchmarks/history.py`` reads to build the regression table.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODES = ("rec-train", "ff-train", "rec-infer", "ff-infer")
#: Size of the square float32 GEMM timed in every round to measure the CPU's matmul rate in the same run.
GEMM_N = 1536
GEMM_KEY = "gemm"


def make_step(impl: str, H: int, recurrent: bool, train: bool, x, labels) -> Callable[[], None]:
    """One training step (forward, backward, Adam) or one no-grad forward of ``impl``."""
    import torch
    import torch.nn.functional as F

    import suite

    torch.manual_seed(0)
    model = suite.BUILDERS[impl](H, recurrent)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        if train:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x).mean(0), labels).backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)

    return step


def impl_version(impl: str) -> str:
    """The installed version of ``impl``'s package (``"checkout"`` for ntgraph itself)."""
    if impl == "ntgraph":
        return "checkout"
    try:
        return importlib.metadata.version("torch" if impl == "plain-torch" else impl)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="100x64x128", help="TxBxH")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (after one warm-up round)")
    parser.add_argument("--only", default="ntgraph,snntorch,norse,spikingjelly,sinabs,plain-torch")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {MODES}")
    parser.add_argument("--out", default=None, help="also write the markdown to this file")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    import suite

    torch.set_num_threads(args.threads)
    T, B, H = (int(v) for v in args.config.split("x"))
    x, labels = suite._shd_data(T, B)
    impls = []
    for impl in args.only.split(","):
        try:
            make_step(impl, 8, False, False, x[:2, :2], labels[:2])
            impls.append(impl)
        except ImportError as exc:  # a peer that is not installed
            print(f"[skip] {impl}: {exc}", file=sys.stderr)
    load = os.getloadavg()
    date = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    rows: list[dict] = []
    header = [f"Interleaved timing, (T, B, H) = ({T}, {B}, {H}), {args.threads} thread(s), float32, "
              f"{args.repeats} rounds after 1 warm-up; torch {torch.__version__}; "
              f"load average at start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; {date}", ""]
    lines = ["| mode | implementation | min ms | median ms | median / fastest peer median | median x matmul limit | "
             "min x matmul limit |",
             "|---|---|---:|---:|---:|---:|---:|"]
    gemm_a, gemm_b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
    gemm_times: list[float] = []
    measured = []
    for mode in args.modes.split(","):
        net, kind = mode.split("-")
        steps = {impl: make_step(impl, H, net == "rec", kind == "train", x, labels) for impl in impls}
        # the GEMM whose rate sets the matmul limit, timed in turn with the implementations (same load)
        steps[GEMM_KEY] = lambda: torch.mm(gemm_a, gemm_b)
        times = suite.interleaved_times(steps, args.repeats)
        gemm_times += times.pop(GEMM_KEY)
        measured.append((mode, net, kind, times))
        print(f"[done] {mode}", file=sys.stderr, flush=True)
    best_gflops = 2 * GEMM_N ** 3 / min(gemm_times) / 1e9  # the CPU's best measured GEMM rate in this run
    for mode, net, kind, times in measured:
        med = {k: statistics.median(v) for k, v in times.items()}
        peers = [k for k in impls if k not in suite.NOT_PEERS]
        best = min((med[k] for k in peers), default=None)
        limit_s = suite.shd_flops(T, B, H, net == "rec", kind == "train") / (best_gflops * 1e9)
        for impl in impls:
            ratio = f"{med[impl] / best:.2f}" if best else "-"
            if impl == "ntgraph":
                ratio = f"**{ratio}**"
            lines.append(f"| {mode} | {impl} | {1e3 * min(times[impl]):.1f} | {1e3 * med[impl]:.1f} | {ratio} | "
                         f"{med[impl] / limit_s:.2f} | {min(times[impl]) / limit_s:.2f} |")
            rows.append({"config": args.config, "T": T, "B": B, "H": H, "mode": mode, "implementation": impl,
                         "min_ms": 1e3 * min(times[impl]), "median_ms": 1e3 * med[impl],
                         "ratio_vs_fastest_peer": med[impl] / best if best else None,
                         "x_matmul_limit": med[impl] / limit_s, "min_x_matmul_limit": min(times[impl]) / limit_s})
    gemm_line = (f"GEMM ({GEMM_N}x{GEMM_N} float32 `torch.mm`, timed in turn with the steps): best "
                 f"{best_gflops:.1f} GFLOP/s, median {2 * GEMM_N ** 3 / statistics.median(gemm_times) / 1e9:.1f} "
                 f"GFLOP/s. \"x matmul limit\": the median (or the fastest round) over the workload's matmul FLOPs "
                 f"at the best rate (`suite.shd_flops`).")
    load_end = os.getloadavg()
    text = "\n".join(header + lines + ["", gemm_line]) + f"\n\nLoad average at the end: {load_end[0]:.2f}.\n"
    print(text)
    if args.out:
        from ntgraph._atomic import atomic_write

        with atomic_write(Path(args.out), "w") as fh:
            fh.write(text)
        data = {"benchmark": "interleaved", "config": args.config, "threads": args.threads,
                "repeats": args.repeats, "dtype": "float32", "date_utc": date,
                "load_average_at_start": [round(v, 2) for v in load],
                "load_average_at_end": [round(v, 2) for v in load_end],
                "gemm": {"n": GEMM_N, "best_gflops": best_gflops,
                         "median_gflops": 2 * GEMM_N ** 3 / statistics.median(gemm_times) / 1e9},
                "versions": {"torch": torch.__version__, **{impl: impl_version(impl) for impl in impls}},
                "rows": rows}
        with atomic_write(Path(args.out).with_suffix(".json"), "w") as fh:
            json.dump(data, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
