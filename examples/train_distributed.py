"""Data-parallel training with torchrun: the same Trainer, one process per CPU core or GPU.

The task: classify Poisson spike trains whose per-channel rates depend on the
class (3 classes, 12 input channels) with a recurrent LIF layer and a leaky
readout.  Every rank generates the same data (fixed seed); the trainer shards
each global batch of ``--batch-size`` samples over the ranks, averages the
gradients (DistributedDataParallel for BPTT/TBPTT, an explicit all-reduce for
e-prop), reports metrics over all ranks and writes checkpoints from rank 0.
At the end the ranks check that their weight replicas are bit-identical.

Run (see docs/distributed.md)::

    torchrun --nproc_per_node=2 examples/train_distributed.py --algorithm bptt --epochs 5
    torchrun --nproc_per_node=2 examples/train_distributed.py --algorithm eprop --checkpoint-dir runs/ep
    torchrun --nproc_per_node=2 examples/train_distributed.py --checkpoint-dir runs/ep --resume   # continue
    .venv/bin/python examples/train_distributed.py          # without torchrun: one process, same results

Multi-GPU node: ``torchrun --nproc_per_node=gpu ...`` (NCCL, one GPU per rank).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ntgraph as ntg  # noqa: E402
from backends.torchsim.learning import BPTT, TBPTT, CrossEntropyOverTime, EProp, Trainer  # noqa: E402
from backends.torchsim.learning.distributed import init_distributed, is_main_process  # noqa: E402

N_IN, N_HIDDEN, N_CLASSES, DT = 12, 32, 3, 1e-3
ALGORITHMS = {"bptt": lambda: BPTT(), "tbptt": lambda: TBPTT(window=25), "eprop": lambda: EProp()}


def build(seed: int = 0) -> ntg.Graph:
    g = ntg.Graph("distributed-example", seed=seed)
    g.input("spikes_in", N_IN)
    g.population("hidden", ntg.LIF(tau_mem=10e-3, v_th=0.5, reset="subtract"), N_HIDDEN)
    g.dense("spikes_in", "hidden", scale=1.5)
    g.dense("hidden", "hidden", scale=0.2, delay=1, no_self=True)
    g.population("readout", ntg.LI(tau_mem=20e-3), N_CLASSES)
    g.dense("hidden", "readout")
    g.output("logits", "readout")
    return g


def make_data(n: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike trains ``[n, steps, N_IN]`` (per sample) and labels ``[n]``; identical on every rank."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, N_CLASSES, (n,), generator=gen)
    rate_hz = torch.full((N_CLASSES, N_IN), 10.0)
    for c in range(N_CLASSES):
        rate_hz[c, c * (N_IN // N_CLASSES):(c + 1) * (N_IN // N_CLASSES)] = 80.0
    p = (rate_hz[labels] * DT)[:, None, :].expand(n, steps, N_IN)
    return (torch.rand(n, steps, N_IN, generator=gen) < p).float(), labels


def replicas_identical(model: torch.nn.Module) -> bool:
    """True if every rank holds bit-identical parameters (an all-gather of one checksum per rank)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return True
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])
    mine = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1, dtype=flat.dtype)).sum()])
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine.tolist())
    return all(p == parts[0] for p in parts)


def main(algorithm: str = "bptt", epochs: int = 5, samples: int = 192, steps: int = 60, batch_size: int = 32,
         checkpoint_dir: Optional[str] = None, resume: bool = False, summary: Optional[str] = None) -> dict:
    distributed = "RANK" in os.environ  # launched by torchrun
    device = init_distributed() if distributed else torch.device("cpu")
    model = ntg.compile(build(), "torch", dt=DT, device=str(device))
    trainer = Trainer(model, CrossEntropyOverTime("logits", reduce="mean"), algorithm=ALGORITHMS[algorithm](),
                      optimizer=lambda p: torch.optim.Adam(p, lr=2e-2), seed=0, progress=is_main_process(),
                      checkpoint_dir=checkpoint_dir, distributed=distributed)
    train, test = make_data(samples, steps, seed=1), make_data(samples // 2, steps, seed=2)
    resume_from = Path(checkpoint_dir) / "last.pt" if resume and checkpoint_dir else None
    history = trainer.fit(train, test, epochs=epochs, batch_size=batch_size, resume_from=resume_from)
    result = {"world_size": trainer.distributed.world_size if trainer.distributed else 1,
              "gradients": trainer.distributed.mode if trainer.distributed else "local",
              "first_loss": history.records[0]["loss"], "last_loss": history.records[-1]["loss"],
              "val_accuracy": history.records[-1]["val_accuracy"], "epochs": trainer.epoch,
              "replicas_identical": replicas_identical(model)}
    if is_main_process():
        print(json.dumps(result))
        if summary:
            Path(summary).write_text(json.dumps(result))
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return result


def launch(nproc: int, args: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run this script under ``torchrun --standalone --nproc_per_node=nproc`` (a free port on this machine)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", __file__, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def smoke() -> dict:
    """2 ranks, e-prop, 2 tiny epochs with checkpoints (used by tests/test_examples.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = launch(2, ["--algorithm", "eprop", "--epochs", "2", "--samples", "24", "--steps", "20",
                          "--batch-size", "8", "--checkpoint-dir", f"{tmp}/ckpt", "--summary", f"{tmp}/summary.json"])
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        result = json.loads(Path(f"{tmp}/summary.json").read_text())
        result["checkpoints"] = sorted(p.name for p in Path(f"{tmp}/ckpt").iterdir())
    print(result)
    return result

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="bptt")
    parser.add_argument("--epochs", type=int, default=5, help="total epochs (a resumed run trains the rest)")
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--steps", type=int, default=60, help="time steps per sample (1 ms each)")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch: samples per step over all ranks")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--resume", action="store_true", help="continue from CHECKPOINT_DIR/last.pt")
    parser.add_argument("--summary", default=None, help="write the result as JSON (rank 0)")
    a = parser.parse_args()
    main(a.algorithm, a.epochs, a.samples, a.steps, a.batch_size, a.checkpoint_dir, a.resume, a.summary)
