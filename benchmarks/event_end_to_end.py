"""Whole SHD-shaped ntgraph steps with the input projection forced dense and forced event-driven, interleaved.

``event_threshold.py`` times the input projection alone; this script times
what a user sees: one training step (forward, backward, Adam) or one no-grad
forward of ``suite.build_ntgraph`` with ``set_event_driven(model, "dense")``
and with ``set_event_driven(model, "event")``, the two timed in turn
(``--repeats`` rounds after one warm-up), so both see the same load.  It
prints ``dense / event`` per mode (> 1: the event path pays).  Used to choose
``EVENT_MIN_OUTPUTS`` and ``EVENT_DENSITY_THRESHOLD`` (docs/performance.md).

    .venv/bin/python benchmarks/event_end_to_end.py --config 100x64x512
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="100x64x512", help="TxBxH")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--modes", default="ff-train,ff-infer,rec-train,rec-infer")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    import torch.nn.functional as F

    import suite
    from backends.torchsim.projections import set_event_driven

    torch.set_num_threads(args.threads)
    T, B, H = (int(v) for v in args.config.split("x"))
    x, labels = suite._shd_data(T, B)
    print(f"load average {os.getloadavg()[0]:.2f}; input density {float(x.mean()):.3f}")
    for mode in args.modes.split(","):
        net, kind = mode.split("-")
        steps = {}
        for path in ("dense", "event"):
            torch.manual_seed(0)
            model = suite.build_ntgraph(H, net == "rec")
            set_event_driven(model, path)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def step(model=model, opt=opt) -> None:
                if kind == "train":
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(x).mean(0), labels).backward()
                    opt.step()
                else:
                    with torch.no_grad():
                        model(x)

            steps[path] = step
        times = suite.interleaved_times(steps, args.repeats)
        med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        print(f"{T}x{B}x{H} {mode}: dense {med['dense']:.1f} ms, event {med['event']:.1f} ms, "
              f"dense/event {med['dense'] / med['event']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
