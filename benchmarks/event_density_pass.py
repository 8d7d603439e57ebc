"""A/B of the auto-mode density check of an event-driven input projection, in one process.

``old``: the density is measured with ``count_nonzero`` and ``EventMatmul`` then extracts the events
with ``nonzero`` (two passes over ``x``; :class:`DenseProjection` still does this right after a dense
input, which is how this script selects it: ``last_density = 1``).  ``new``: one ``nonzero`` pass
whose count gives the density and whose events the matmul reuses (``last_density = None``).  The two
variants are timed alternately, so both see the same load.  Input: the SHD-shaped drive of
``benchmarks/suite.py`` (``[T, B, 700]`` binary at ~3% density) into H LIF neurons, float32, no grad.

    .venv/bin/python benchmarks/event_density_pass.py --config 100x64x512 --repeats 101
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: Optional[list[str]] = None) -> int:
    """Print the median and minimum time (ms) of one input-projection call for each variant."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="100x64x512", help="TxBxH")
    ap.add_argument("--repeats", type=int, default=101, help="calls per variant (the first is a warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    import ntgraph as ntg
    import suite

    T, B, H = (int(v) for v in args.config.split("x"))
    torch.set_num_threads(args.threads)
    x, _ = suite._shd_data(T, B)
    g = ntg.Graph("density_pass", seed=0)
    g.input("x", x.shape[-1])
    g.population("h", ntg.LIF(tau_mem=10e-3), H)
    g.dense("x", "h", name="in")
    g.output("s", "h")
    proj = ntg.compile(g, "torch", dt=1e-3)._proj["in"]
    w = proj.effective_weight().detach()
    times: dict[str, list[float]] = {"old": [], "new": []}
    with torch.no_grad():
        for _ in range(args.repeats):
            for variant in times:
                proj.last_density = 1.0 if variant == "old" else None
                t0 = time.perf_counter()
                proj.apply(x, w)
                times[variant].append((time.perf_counter() - t0) * 1e3)
    print(f"(T, B, H) = ({T}, {B}, {H}), {args.threads} thread(s), path {proj.last_path}, "
          f"density {proj.last_density:.4f}")
    for variant, ms in times.items():
        print(f"{variant}: median {statistics.median(ms[1:]):.2f} ms, min {min(ms[1:]):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
