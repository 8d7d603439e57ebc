"""ntgraph's torch backend against the installed SNN simulators, side by side, on SHD-shaped workloads.

Run (from the repository root):

    .venv/bin/python benchmarks/suite.py [--quick | --full] [--threads 2] [--out benchmarks/results]

Every measurement runs in a fresh subprocess of this script (``--worker``), so
the peak resident memory reported (``ru_maxrss`` of that subprocess) belongs to
that configuration alone.  All implementations run at float32 with
``torch.set_num_threads(--threads)``.  Times are medians of the timed repeats
after warm-up.

Sections:

* **SHD-shaped networks**: 700 inputs -> H LIF (feed-forward or recurrent) ->
  20 LI readouts, T steps, batch B, at (T, B, H) = (100, 64, 128), (100, 64,
  512), (250, 32, 256).  ``train``: forward + backward + Adam step of the
  cross-entropy of the time-averaged readout; ``infer``: forward under
  ``torch.no_grad()``.  Ratios are against the fastest *peer* (ntgraph and the
  plain-torch reference loop are not peers).  The matmul FLOPs of the workload
  divided by this CPU's sustained GEMM rate (a large ``torch.mm`` timed in the
  same run, same thread count) give the "matmul limit"; ``x limit`` is how many
  times that limit each implementation takes.
* **e-prop vs BPTT memory**: ntgraph's ``EProp`` and ``BPTT`` on a recurrent
  SHD-shaped network (B=16, H=128) as T grows; the activation memory is the
  subprocess's peak RSS during one training step minus its peak RSS before it.
* **Compile time**: ``ntgraph.compile`` of a graph of 1000 small LIF
  populations (a chain plus random forward projections).

``--quick`` (1 warm-up, 3 repeats, only (100, 64, 128), e-prop memory at T=100
and 1000) took about 5 minutes on a loaded 2-core machine; the default full mode (2
warm-ups, 7 repeats, all configurations, T up to 10000) much longer.
``--configs``, ``--sections`` and ``--only`` select parts.

Output: a markdown table on stdout, written to ``<out>/<date>-<host><suffix>.md``,
and the same numbers in ``<out>/<date>-<host><suffix>.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
N_IN, N_OUT = 700, 20
TAU_MEM = 20e-3  # s
DT = 1e-3  # s


def eprop_graph(hidden: int):
    """The e-prop memory workload: 700 inputs -> ``hidden`` recurrent LIF -> 20 LI (also benchmarks/eprop_memory.py)."""
    import ntgraph as ntg

    g = ntg.Graph("eprop", seed=0)
    g.input("x", N_IN)
    g.population("h", ntg.LIF(tau_mem=TAU_MEM, v_th=1.0, reset="subtract"), hidden)
    g.dense("x", "h", scale=2.0)
    g.dense("h", "h", scale=0.5, no_self=True)
    g.population("o", ntg.LI(tau_mem=TAU_MEM), N_OUT)
    g.dense("h", "o", scale=1.0)
    g.output("y", "o")
    return g


def chain_graph(populations: int, size: int, seed: int = 0):
    """The compile-time workload: a chain of ``populations`` LIF populations of ``size`` neurons plus random
    extra forward projections (acyclic); also benchmarks/compile_time.py."""
    import random

    import ntgraph as ntg

    rng = random.Random(seed)
    g = ntg.Graph("big", seed=seed)
    g.input("x", size)
    prev = "x"
    for i in range(populations):
        g.population(f"p{i}", ntg.LIF(tau_mem=TAU_MEM), size)
        g.dense(prev, f"p{i}", scale=1.0)
        prev = f"p{i}"
    pairs: set[tuple[int, int]] = set()
    for _ in range(populations):
        i, j = sorted(rng.sample(range(populations), 2))
        if j > i + 1 and (i, j) not in pairs:
            pairs.add((i, j))
            g.dense(f"p{i}", f"p{j}", scale=0.1)
    g.output("y", prev)
    return g
SHD_CONFIGS = [(100, 64, 128), (100, 64, 512), (250, 32, 256)]
PEERS = ["snntorch", "norse", "spikingjelly", "sinabs"]
IMPLS = ["ntgraph"] + PEERS + ["plain-torch"]
NOT_PEERS = {"ntgraph", "plain-torch"}


# --------------------------------------------------------------------------- helpers (worker side)
def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def interleaved_times(steps: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each step, the steps timed in turn within each round (so a change of machine load
    hits all of them alike): ``warmup`` untimed rounds, then ``repeats`` timed ones."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def _timed(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _shd_data(T: int, B: int, seed: int = 0):
    """SHD-like input: binary spikes [T, B, 700] at ~3% density, and 20-class labels [B]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, N_IN, generator=g) < 0.03).float()
    labels = torch.randint(0, N_OUT, (B,), generator=g)
    return x, labels


# --------------------------------------------------------------------------- the implementations
# Each builder returns a torch.nn.Module whose forward(x [T, B, 700]) returns the readout [T, B, 20].
# Decay per step a = 1 - dt/tau (ntgraph's euler semantics); reset to zero; threshold 1.

def build_ntgraph(H: int, recurrent: bool):
    import torch

    import ntgraph as ntg

    g = ntg.Graph("shd", seed=0)
    g.input("x", N_IN)
    g.population("h", ntg.LIF(tau_mem=TAU_MEM, v_th=1.0, reset="zero"), H)
    g.dense("x", "h", scale=2.0)
    if recurrent:
        g.dense("h", "h", scale=0.5, no_self=True)
    g.population("o", ntg.LI(tau_mem=TAU_MEM), N_OUT)
    g.dense("h", "o", scale=1.0)
    g.output("y", "o")
    sim = ntg.compile(g, "torch", dt=DT, dtype=torch.float32)

    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sim = sim

        def forward(self, x):
            return self.sim(x).outputs["y"]

    return Wrap()


def build_plain(H: int, recurrent: bool):
    """A straightforward plain-PyTorch loop (input projection hoisted out of the loop): the floor of idiomatic code."""
    import torch
    from torch import nn

    a = 1.0 - DT / TAU_MEM

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return (v > 0).to(v.dtype)

        @staticmethod
        def backward(ctx, grad):
            (v,) = ctx.saved_tensors
            return grad / (1.0 + 10.0 * v.abs()) ** 2

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w_in = nn.Linear(N_IN, H, bias=False)
            self.w_rec = nn.Linear(H, H, bias=False) if recurrent else None
            self.w_out = nn.Linear(H, N_OUT, bias=False)

        def forward(self, x):
            T, B, _ = x.shape
            cur = self.w_in(x)
            v = x.new_zeros(B, H)
            z = x.new_zeros(B, H)
            spikes = []
            for t in range(T):
                i = cur[t] + self.w_rec(z) if self.w_rec is not None else cur[t]
                v = a * v + (1 - a) * i
                z = Spike.apply(v - 1.0)
                v = v * (1.0 - z.detach())
                spikes.append(z)
            io = self.w_out(torch.stack(spikes))
            vo = x.new_zeros(B, N_OUT)
            out = []
            for t in range(T):
                vo = a * vo + (1 - a) * io[t]
                out.append(vo)
            return torch.stack(out)

    return Net()


def build_snntorch(H: int, recurrent: bool):
    import snntorch as snn
    import torch
    from torch import nn

    beta = 1.0 - DT / TAU_MEM

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(N_IN, H, bias=False)
            if recurrent:
                self.lif = snn.RLeaky(beta=beta, linear_features=H, all_to_all=True, reset_mechanism="zero")
            else:
                self.lif = snn.Leaky(beta=beta, reset_mechanism="zero")
            self.fc2 = nn.Linear(H, N_OUT, bias=False)
            self.li = snn.Leaky(beta=beta, reset_mechanism="none")

        def forward(self, x):
            cur = self.fc1(x)
            if recurrent:
                spk, mem = self.lif.init_rleaky()
            else:
                mem = self.lif.init_leaky()
            mem2 = self.li.init_leaky()
            out = []
            for t in range(x.shape[0]):
                if recurrent:
                    spk, mem = self.lif(cur[t], spk, mem)
                else:
                    spk, mem = self.lif(cur[t], mem)
                _, mem2 = self.li(self.fc2(spk), mem2)
                out.append(mem2)
            return torch.stack(out)

    return Net()


def build_norse(H: int, recurrent: bool):
    import norse.torch as norse
    import torch
    from torch import nn

    tau_inv = torch.tensor(1.0 / TAU_MEM)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if recurrent:
                # norse's recurrent LIF cell holds its own input and recurrent weights (current-based synapse)
                self.lif = norse.LIFRecurrentCell(N_IN, H, p=norse.LIFParameters(tau_mem_inv=tau_inv), dt=DT)
            else:
                self.fc1 = nn.Linear(N_IN, H, bias=False)
                self.lif = norse.LIFBoxCell(p=norse.LIFBoxParameters(tau_mem_inv=tau_inv), dt=DT)
            self.fc2 = nn.Linear(H, N_OUT, bias=False)
            self.li = norse.LIBoxCell(p=norse.LIBoxParameters(tau_mem_inv=tau_inv), dt=DT)

        def forward(self, x):
            cur = x if recurrent else self.fc1(x)
            s1 = s2 = None
            out = []
            for t in range(x.shape[0]):
                z, s1 = self.lif(cur[t], s1)
                v, s2 = self.li(self.fc2(z), s2)
                out.append(v)
            return torch.stack(out)

    return Net()


def build_spikingjelly(H: int, recurrent: bool):
    import torch
    from spikingjelly.activation_based import functional, neuron
    from torch import nn

    tau = TAU_MEM / DT  # spikingjelly's tau is in steps: v <- v + (x - v)/tau, i.e. a = 1 - 1/tau

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(N_IN, H, bias=False)
            self.rec = nn.Linear(H, H, bias=False) if recurrent else None
            self.lif = neuron.LIFNode(tau=tau, v_threshold=1.0, v_reset=0.0, detach_reset=True,
                                      step_mode="s" if recurrent else "m")
            self.fc2 = nn.Linear(H, N_OUT, bias=False)
            self.li = neuron.LIFNode(tau=tau, v_threshold=float("inf"), v_reset=None, step_mode="m",
                                     store_v_seq=True)

        def forward(self, x):
            functional.reset_net(self)
            cur = self.fc1(x)
            if recurrent:
                z = x.new_zeros(x.shape[1], self.fc1.out_features)
                zs = []
                for t in range(x.shape[0]):
                    z = self.lif(cur[t] + self.rec(z))
                    zs.append(z)
                z = torch.stack(zs)
            else:
                z = self.lif(cur)
            self.li(self.fc2(z))
            return self.li.v_seq

    return Net()


def build_sinabs(H: int, recurrent: bool):
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, SingleSpike
    from torch import nn

    class Net(nn.Module):
        # sinabs layers take batch-first [B, T, N]; tau in steps (a = exp(-1/tau); norm_input scales the input by 1-a)
        def __init__(self) -> None:
            super().__init__()
            tau = TAU_MEM / DT
            self.fc1 = nn.Linear(N_IN, H, bias=False)
            kw = dict(tau_mem=tau, spike_threshold=1.0, norm_input=True,
                      spike_fn=SingleSpike, reset_fn=MembraneReset())
            if recurrent:
                self.lif = sl.LIFRecurrent(rec_connect=nn.Linear(H, H, bias=False), **kw)
            else:
                self.lif = sl.LIF(**kw)
            self.fc2 = nn.Linear(H, N_OUT, bias=False)
            self.li = sl.ExpLeak(tau_mem=tau, norm_input=True)

        def forward(self, x):
            for m in (self.lif, self.li):
                m.reset_states()
            xb = x.transpose(0, 1)
            z = self.lif(self.fc1(xb))
            return self.li(self.fc2(z)).transpose(0, 1)

    return Net()


BUILDERS = {"ntgraph": build_ntgraph, "snntorch": build_snntorch, "norse": build_norse,
            "spikingjelly": build_spikingjelly, "sinabs": build_sinabs, "plain-torch": build_plain}


# --------------------------------------------------------------------------- worker jobs
def job_shd(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F

    T, B, H = spec["T"], spec["B"], spec["H"]
    torch.manual_seed(0)
    model = BUILDERS[spec["impl"]](H, spec["recurrent"])
    x, labels = _shd_data(T, B)
    if spec["mode"] == "train":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            y = model(x)
            loss = F.cross_entropy(y.mean(0), labels)
            loss.backward()
            opt.step()
    else:
        def step() -> None:
            with torch.no_grad():
                model(x)

    with torch.no_grad():
        y = model(x[:2])
    if tuple(y.shape) != (2, B, N_OUT):
        raise RuntimeError(f"{spec['impl']}: readout shape {tuple(y.shape)}, expected {(2, B, N_OUT)}")
    del y
    times = _timed(step, spec["warmup"], spec["repeats"])
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "peak_rss_mb": _peak_rss_mb()}


def job_gemm(spec: dict) -> dict:
    """Sustained float32 GEMM rate: median of timed ``torch.mm`` of two n x n matrices."""
    import torch

    n = spec["n"]
    a, b = torch.randn(n, n), torch.randn(n, n)
    times = _timed(lambda: torch.mm(a, b), 2, spec["repeats"])
    return {"n": n, "median_s": statistics.median(times), "gflops": 2 * n ** 3 / statistics.median(times) / 1e9,
            "best_gflops": 2 * n ** 3 / min(times) / 1e9}


def job_eprop(spec: dict) -> dict:
    import torch

    import ntgraph as ntg
    from backends.torchsim.learning.algorithms import BPTT
    from backends.torchsim.learning.eprop import EProp
    from backends.torchsim.learning.losses import CrossEntropyOverTime

    T, B, H = spec["T"], spec["B"], spec["H"]
    model = ntg.compile(eprop_graph(H), "torch", dt=DT, dtype=torch.float32)
    x, labels = _shd_data(T, B)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    algo = EProp() if spec["algo"] == "eprop" else BPTT()
    objective = CrossEntropyOverTime(output="y", reduce="mean")
    before = _peak_rss_mb()
    t0 = time.perf_counter()
    algo.train_step(model, x, labels, objective, opt)
    elapsed = time.perf_counter() - t0
    peak = _peak_rss_mb()
    return {"step_s": elapsed, "rss_before_mb": before, "peak_rss_mb": peak, "activation_mb": peak - before}


def job_compile(spec: dict) -> dict:
    import torch  # noqa: F401  (import cost outside the timed region)

    import ntgraph as ntg

    n, size = spec["populations"], spec["size"]

    def build() -> "ntg.Graph":
        return chain_graph(n, size, seed=0)

    build_times, compile_times = [], []
    graph = None
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        graph = build()
        build_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ntg.compile(graph, "torch", dt=DT)
        compile_times.append(time.perf_counter() - t0)
    return {"populations": n, "projections": len(graph.projections), "build_s": statistics.median(build_times),
            "compile_s": statistics.median(compile_times), "peak_rss_mb": _peak_rss_mb()}


JOBS = {"shd": job_shd, "gemm": job_gemm, "eprop": job_eprop, "compile": job_compile}


def worker(spec: dict) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.set_default_dtype(torch.float32)
    sys.path.insert(0, str(ROOT))
    out = JOBS[spec["job"]](spec)
    print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- driver side
def run_job(spec: dict, timeout: float) -> dict:
    """Run one measurement in a fresh subprocess; returns its result or ``{"error": ...}``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {proc.returncode}: {tail[0][:200]}"}


def available_impls() -> dict[str, Optional[str]]:
    """Each implementation's version, or None with the reason it is skipped (checked in a subprocess each)."""
    modules = {"ntgraph": "ntgraph", "snntorch": "snntorch", "norse": "norse",
               "spikingjelly": "spikingjelly.activation_based.neuron", "sinabs": "sinabs.layers",
               "plain-torch": "torch"}
    out: dict[str, Any] = {}
    for impl, mod in modules.items():
        top = mod.split(".")[0]
        code = (f"import importlib, importlib.metadata as m; importlib.import_module({mod!r}); "
                f"print(m.version({top!r}) if {top!r} != 'ntgraph' else 'checkout')")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
        if proc.returncode == 0:
            out[impl] = {"version": proc.stdout.strip().splitlines()[-1]}
        else:
            last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
            out[impl] = {"skipped": last[:200]}
    return out


def machine_info(threads: int) -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"host": socket.gethostname(), "cpu": cpu, "logical_cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "threads": threads, "dtype": "float32",
            "load_average_at_start": [round(v, 2) for v in load] if load else None,
            "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def shd_flops(T: int, B: int, H: int, recurrent: bool, train: bool) -> float:
    """Matmul FLOPs of one step (2 per multiply-add).

    Forward: input 2*T*B*700*H, recurrent 2*T*B*H*H, readout 2*T*B*H*20.  Training
    adds the weight gradients of all three and the input gradients of the
    recurrent and readout matmuls (none for the input projection: the data need
    no gradient), so training = 2x input + 3x recurrent + 3x readout.
    """
    f_in, f_rec, f_out = 2 * T * B * N_IN * H, (2 * T * B * H * H if recurrent else 0), 2 * T * B * H * N_OUT
    return float(2 * f_in + 3 * f_rec + 3 * f_out) if train else float(f_in + f_rec + f_out)


def _fmt_ms(s: Optional[float]) -> str:
    return "-" if s is None else f"{s * 1e3:.1f}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="1 warm-up + 3 repeats, only (T,B,H)=(100,64,128), e-prop memory at T=100, 1000 only")
    mode.add_argument("--full", action="store_true", help="2 warm-up + 7 repeats, all three configurations, e-prop memory up to T=10000 (default)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every implementation")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the .md and .json")
    parser.add_argument("--only", default=None, help="comma-separated implementations to run (default: all available)")
    parser.add_argument("--configs", default=None,
                        help="SHD configurations TxBxH, comma-separated (default: 100x64x128 with --quick, all three "
                             "otherwise), e.g. 100x64x512,250x32x256")
    parser.add_argument("--sections", default="shd,eprop,compile",
                        help="comma-separated sections to run: shd, eprop, compile (default: all)")
    parser.add_argument("--suffix", default="", help="appended to the result files' stem <date>-<host>")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per subprocess")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(json.loads(args.worker))
        return 0

    quick = bool(args.quick)
    warmup, repeats = (1, 3) if quick else (2, 7)
    configs = SHD_CONFIGS[:1] if quick else SHD_CONFIGS
    if args.configs:
        configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    eprop_T = [100, 1000] if quick else [100, 1000, 10000]
    machine = machine_info(args.threads)
    impls = available_impls()
    if args.only:
        wanted = set(args.only.split(","))
        impls = {k: v for k, v in impls.items() if k in wanted}
    for impl, info in impls.items():
        if "skipped" in info:
            print(f"[skip] {impl}: {info['skipped']}", file=sys.stderr)
    runnable = [i for i in IMPLS if i in impls and "version" in impls[i]]
    base = {"threads": args.threads}

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    log("GEMM rate")
    gemm = run_job({**base, "job": "gemm", "n": 2048, "repeats": 5 if quick else 15}, args.timeout)
    gflops = gemm.get("gflops")

    shd: list[dict] = []
    sections = set(args.sections.split(","))
    for (T, B, H) in (configs if "shd" in sections else []):
        for recurrent in (True, False):
            for run_mode in ("train", "infer"):
                for impl in runnable:
                    spec = {**base, "job": "shd", "impl": impl, "T": T, "B": B, "H": H, "recurrent": recurrent,
                            "mode": run_mode, "warmup": warmup, "repeats": repeats}
                    log(f"{impl} {run_mode} {'rec' if recurrent else 'ff'} T={T} B={B} H={H}")
                    res = run_job(spec, args.timeout)
                    log(f"  error: {res['error']}" if "error" in res else f"  {res['median_s'] * 1e3:.1f} ms")
                    shd.append({k: spec[k] for k in ("impl", "T", "B", "H", "recurrent", "mode")} | res)

    # ratios against the fastest peer, and distance from the matmul limit
    for row in shd:
        group = [r for r in shd if all(r[k] == row[k] for k in ("T", "B", "H", "recurrent", "mode"))
                 and r["impl"] not in NOT_PEERS and "median_s" in r]
        best = min(group, key=lambda r: r["median_s"]) if group else None
        row["fastest_peer"] = best["impl"] if best else None
        flops = shd_flops(row["T"], row["B"], row["H"], row["recurrent"], row["mode"] == "train")
        row["matmul_gflop"] = flops / 1e9
        row["matmul_limit_s"] = flops / (gflops * 1e9) if gflops else None
        if "median_s" in row:
            row["vs_fastest_peer"] = row["median_s"] / best["median_s"] if best else None
            row["x_limit"] = row["median_s"] / row["matmul_limit_s"] if row["matmul_limit_s"] else None

    eprop: list[dict] = []
    if "ntgraph" in runnable and "eprop" in sections:
        for T in eprop_T:
            for algo in ("bptt", "eprop"):
                log(f"{algo} memory T={T}")
                res = run_job({**base, "job": "eprop", "algo": algo, "T": T, "B": 16, "H": 128}, args.timeout)
                if "error" in res:
                    log(f"  error: {res['error']}")
                eprop.append({"algo": algo, "T": T, "B": 16, "H": 128} | res)

    compile_res: dict = {}
    if "ntgraph" in runnable and "compile" in sections:
        log("compile 1000 populations")
        compile_res = run_job({**base, "job": "compile", "populations": 1000, "size": 16,
                               "repeats": 1 if quick else 3}, args.timeout)

    results = {"machine": machine, "mode": "quick" if quick else "full", "warmup": warmup, "repeats": repeats,
               "implementations": impls, "gemm": gemm, "shd": shd, "eprop_memory": eprop, "compile": compile_res}
    md = render(results)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d')}-{machine['host']}{args.suffix}"
    from ntgraph._atomic import atomic_write

    with atomic_write(out / f"{stem}.md", "w") as fh:
        fh.write(md)
    with atomic_write(out / f"{stem}.json", "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"wrote {out / (stem + '.md')} and {out / (stem + '.json')}", file=sys.stderr)
    return 0


def render(res: dict) -> str:
    m = res["machine"]
    lines = [f"# ntgraph benchmark suite ({res['mode']}), {m['date_utc']}", "",
             f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, host `{m['host']}`; torch {m['torch']}, "
             f"Python {m['python']}; torch threads {m['threads']}; {m['dtype']}; "
             f"load average at start {m['load_average_at_start']}.", "",
             "Implementations: " + ", ".join(
                 f"{k} {v['version']}" if "version" in v else f"{k} (skipped: {v['skipped']})"
                 for k, v in res["implementations"].items()) + ".", "",
             f"Medians of {res['repeats']} timed repeats after {res['warmup']} warm-up; each row a fresh subprocess.", ""]
    load = m.get("load_average_at_start")
    if load and load[0] > 0.5 * (m["logical_cores"] or 1):
        lines += [f"**The machine was loaded** (1-minute load average {load[0]} on {m['logical_cores']} cores at the "
                  "start; it is shared with other jobs): absolute times are inflated and noisy, and even ratios "
                  "within a row group can be off; compare only runs made under the same conditions.", ""]
    g = res["gemm"]
    if "gflops" in g:
        lines += [f"Sustained GEMM rate (torch.mm {g['n']}x{g['n']} float32, median): **{g['gflops']:.1f} GFLOP/s** "
                  f"(best repeat {g['best_gflops']:.1f}).", ""]
    lines += ["## SHD-shaped networks (700 -> H LIF -> 20 LI)", "",
              "| net | T | B | H | mode | implementation | median ms | vs fastest peer | peak RSS MiB "
              "| matmul GFLOP | matmul limit ms | x limit |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["shd"]:
        net = "rec" if r["recurrent"] else "ff"
        if "error" in r:
            lines.append(f"| {net} | {r['T']} | {r['B']} | {r['H']} | {r['mode']} | {r['impl']} | error: "
                         f"{r['error'][:80]} | | | | | |")
            continue
        vs = r.get("vs_fastest_peer")
        vs_s = "-" if vs is None else (f"**{vs:.2f}**" if r["impl"] == "ntgraph" else f"{vs:.2f}")
        lim = r.get("matmul_limit_s")
        xl = r.get("x_limit")
        lines.append(f"| {net} | {r['T']} | {r['B']} | {r['H']} | {r['mode']} | {r['impl']} | {_fmt_ms(r['median_s'])} "
                     f"| {vs_s} | {r['peak_rss_mb']:.0f} | {r['matmul_gflop']:.2f} | {_fmt_ms(lim)} "
                     f"| {'-' if xl is None else f'{xl:.1f}'} |")
    if res["eprop_memory"]:
        lines += ["", "## e-prop vs BPTT memory (ntgraph, recurrent, B=16, H=128, one training step)", "",
                  "| T | algorithm | step s | peak RSS MiB | RSS before step MiB | activation MiB (peak - before) |",
                  "|---|---|---|---|---|---|"]
        for r in res["eprop_memory"]:
            if "error" in r:
                lines.append(f"| {r['T']} | {r['algo']} | error: {r['error'][:80]} | | | |")
            else:
                lines.append(f"| {r['T']} | {r['algo']} | {r['step_s']:.2f} | {r['peak_rss_mb']:.0f} "
                             f"| {r['rss_before_mb']:.0f} | {r['activation_mb']:.0f} |")
    c = res["compile"]
    if c:
        lines += ["", "## Compile time", ""]
        if "error" in c:
            lines.append(f"error: {c['error']}")
        else:
            lines.append(f"`ntgraph.compile(graph, 'torch')` of {c['populations']} LIF populations x 16 neurons, "
                         f"{c['projections']} projections: **{c['compile_s']:.2f} s** (graph building "
                         f"{c['build_s']:.2f} s; peak RSS {c['peak_rss_mb']:.0f} MiB).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
