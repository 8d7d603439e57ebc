"""ntgraph.estimate_memory: the report, exact resident components, and agreement with measured peaks.

The agreement test measures real peaks in a fresh process (benchmarks/memory_check.py: peak RSS of the
compiled network and its run, glibc serving allocations of 8 KiB or more by mmap) and requires the estimate within
20 % on a few mid-size networks (dense feed-forward, dense recurrent, Dale + masks, sparse recurrent).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ntgraph
from ntgraph import LI, LIF, Graph, MemoryReport

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import memory_check  # noqa: E402

DT = 1e-3


def small() -> Graph:
    g = Graph("small", seed=0)
    g.input("x", 30)
    g.population("h", LIF(tau_mem=0.02), 50, excitatory=0.8)
    g.population("o", LI(tau_mem=0.02), 4)
    g.dense("x", "h", bias=np.zeros(50))
    g.sparse("h", "h", p=0.1)
    g.dense("h", "o", p=0.5)
    g.output("y", "o")
    return g


def test_report_is_typed_and_prints() -> None:
    r = ntgraph.estimate_memory(small(), batch=4, steps=20, mode="bptt", optimizer="adam")
    assert isinstance(r, MemoryReport)
    assert r.total == sum(r.components.values()) > 0
    assert all(isinstance(v, int) and v >= 0 for v in r.components.values())
    text = str(r)
    assert "memory of 'small' on torch: bptt, batch 4, 20 steps, float32" in text and "total" in text
    d = r.to_dict()
    assert d["total"] == r.total and d["mode"] == "bptt" and d["components"]["optimizer state"] > 0


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_resident_components_equal_the_built_module(dtype: str) -> None:
    """Parameters, constraint buffers and sparse indices are exactly what the compiled module holds."""
    g = small()
    r = ntgraph.estimate_memory(g, batch=1, steps=1, dtype=dtype)
    module = ntgraph.compile(g, "torch", dt=DT, dtype=dtype)
    tensors = [*module.parameters(), *module.buffers()]
    total = sum(t.numel() * t.element_size() for t in tensors)
    comp = r.components
    assert comp["parameters"] + comp["constraint buffers"] + comp["sparse indices"] == total
    indices = sum(t.numel() * t.element_size() for t in module.buffers() if t.dtype in (torch.long, torch.int32))
    assert comp["sparse indices"] == indices


def test_modes_scale_as_expected() -> None:
    """Inference is independent of autograd; BPTT grows with T; TBPTT with its window; e-prop's traces do not grow with T."""
    g = memory_check.dense_rec(20, 200, 4)
    inf = ntgraph.estimate_memory(g, batch=8, steps=100)
    bptt = ntgraph.estimate_memory(g, batch=8, steps=100, mode="bptt")
    bptt2 = ntgraph.estimate_memory(g, batch=8, steps=200, mode="bptt")
    tb = ntgraph.estimate_memory(g, batch=8, steps=200, mode="tbptt", window=20)
    ep = ntgraph.estimate_memory(g, batch=8, steps=100, mode="eprop")
    ep2 = ntgraph.estimate_memory(g, batch=8, steps=200, mode="eprop")
    assert bptt.total > inf.total
    assert bptt2.components["run: kept"] == pytest.approx(2 * bptt.components["run: kept"], rel=1e-3)
    assert tb.total < bptt2.total
    assert ep.components["e-prop traces"] == ep2.components["e-prop traces"] > 0
    half = ntgraph.estimate_memory(g, batch=8, steps=100, mode="bptt", dtype="bfloat16")
    assert half.components["parameters"] * 2 == bptt.components["parameters"]


def test_eprop_trace_estimate_matches_the_algorithm() -> None:
    """The persistent e-prop traces the estimator counts (eps + filtered) equal EProp.trace_bytes after a step."""
    from backends.torchsim.learning import CrossEntropyOverTime, EProp

    g = memory_check.dense_rec(10, 30, 3)
    module = ntgraph.compile(g, "torch", dt=DT)
    algo = EProp()
    algo.compute_gradients(module, torch.rand(12, 4, 10), torch.zeros(4, dtype=torch.long),
                           CrossEntropyOverTime(output="y", reduce="mean"))
    s = 4
    # hidden projections x->h (30x10), h->h (30x30): eps + 1 filtered trace each (readout delay 0); readout xhat
    persistent = 4 * s * (30 * 10 + 30 * 30) * 2 + 4 * s * 30
    assert algo.trace_bytes == persistent
    r = ntgraph.estimate_memory(g, batch=4, steps=12, mode="eprop")
    assert r.components["e-prop traces"] == persistent


AGREEMENT_CASES = [
    ("dense-ff", "inference", 16, 100, "float32", None),
    ("dense-ff", "bptt", 16, 100, "float32", None),  # the LIF scan's training memory (RUN_UNITS lif/grad)
    ("dale-rec", "bptt", 8, 100, "float32", None),
    ("sparse-rec-10k", "bptt", 4, 50, "float32", None),
]


def test_estimate_agrees_with_measured_peak_within_20_percent() -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS counter")
    results = memory_check.measure_many(AGREEMENT_CASES)
    assert len(results) == len(AGREEMENT_CASES)
    for r in results:
        assert r["measured"] > 20 * 2**20, r  # big enough for RSS noise (a few MiB) not to matter
        assert 0.8 <= r["ratio"] <= 1.2, f"{r['case']}: estimate {r['estimate']} vs measured {r['measured']}"
