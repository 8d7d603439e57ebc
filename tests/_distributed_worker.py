"""One rank of the distributed-training tests (tests/test_distributed.py), launched by torchrun.

``python -m torch.distributed.run --nproc_per_node=2 tests/_distributed_worker.py OUT MODE [DIR]``:

* ``equivalence``: trains every case of :data:`CASES` data-parallel (:func:`fit_args`) and writes
  each rank's final weights and history to ``OUT/<case>_rank<r>.pt``; then
  ``crash-resume``;
* ``crash-resume``: trains the BPTT case on spikes encoded on the fly from
  each rank's own global RNG, 4 epochs straight (``OUT/straight_rank<r>.pt``),
  then again with ``last.pt`` written every 2 iterations into ``DIR``,
  "crashes" (an exception on every rank) during iteration 5, builds new
  trainers that resume from ``DIR/last.pt`` (iteration 4, mid-epoch) and
  finish the 4 epochs: ``OUT/resumed_rank<r>.pt``;
* ``train`` then (a second launch) ``resume``: the same, with a real process
  exit (``os._exit``) after iteration 5 and the resume in new processes.

The test builds the same trainers in one process (``distributed=False``) as references.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ntgraph as ntg  # noqa: E402
from backends.torchsim.learning import BPTT, TBPTT, CrossEntropyOverTime, EProp, Trainer  # noqa: E402
from backends.torchsim.learning.distributed import Distributed, init_distributed  # noqa: E402
from backends.torchsim.learning.eprop import AdaptiveFeedback  # noqa: E402

T, FEATURES, HIDDEN, CLASSES = 12, 5, 10, 3
N, BATCH, EPOCHS = 20, 7, 2  # global batches of 7, 7, 6 samples: shares 4+3, 4+3, 3+3 on 2 ranks
#: case -> (algorithm factory, gradient sync): DDP for BPTT/TBPTT, explicit all-reduce for e-prop (and BPTT on request)
CASES = {
    "bptt": (lambda: BPTT(), "auto"),
    "bptt_allreduce": (lambda: BPTT(), "allreduce"),
    "tbptt": (lambda: TBPTT(window=5), "auto"),
    "eprop": (lambda: EProp(feedback=AdaptiveFeedback(seed=1, lr=1e-2)), "auto"),
    "bptt_sampler": (lambda: BPTT(), "auto"),  # a DataLoader with a DistributedSampler (per-rank batches)
}
PER_RANK = 5  # bptt_sampler: 5 samples per rank and step, 2 steps of 10 per epoch


def build() -> ntg.Graph:
    g = ntg.Graph("distributed-test", seed=3)
    g.input("x", FEATURES)
    g.population("h", ntg.LIF(tau_mem=8e-3, v_th=0.5), HIDDEN)
    g.dense("x", "h", scale=1.2)
    g.dense("h", "h", scale=0.3, delay=1)
    g.population("o", ntg.LI(tau_mem=10e-3), CLASSES)
    g.dense("h", "o", bias=np.zeros(CLASSES))
    g.output("y", "o")
    return g


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.integers(0, CLASSES, N)
    rates = np.full((CLASSES, FEATURES), 0.15)
    rates[np.arange(CLASSES), np.arange(CLASSES)] = 0.8
    x = (rng.random((N, T, FEATURES)) < rates[y][:, None, :]).astype(np.float64)
    return x, y


def trainer(case: str, distributed: bool, checkpoint_dir: Optional[str] = None,
            checkpoint_every: Optional[int] = None) -> Trainer:
    """The case's trainer (float64 model, Adam); ``distributed=False`` gives the one-process reference."""
    model = ntg.compile(build(), "torch", dt=1e-3, dtype="float64")
    algorithm, sync = CASES[case]
    return Trainer(model, CrossEntropyOverTime("y", reduce="mean"), algorithm=algorithm(),
                   optimizer=lambda p: torch.optim.Adam(p, lr=2e-2), seed=5, progress=False,
                   distributed=Distributed(gradient_sync=sync) if distributed else False,
                   checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)


class EpochLoader:
    """One-process reference for ``bptt_sampler``: a DataLoader whose sampler gets ``set_epoch`` every pass."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader, self.epoch = loader, 0

    def __iter__(self):
        self.loader.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def fit_args(case: str, distributed: bool) -> tuple[tuple, dict]:
    """``fit``'s arguments for the case: the dataset with the global batch, or (sampler case) a DataLoader.

    With a :class:`~torch.utils.data.DistributedSampler` every rank gets
    ``perm[rank::R]`` of the epoch's permutation, so rank ``r``'s batch ``k`` is
    ``perm[r + R*(k*b + i)]``: together the ranks hold ``perm[k*R*b:(k+1)*R*b]``,
    the one-process batch of ``R*b`` from a sampler with one replica.
    """
    if case != "bptt_sampler":
        return (dataset(), dataset()), {"epochs": EPOCHS, "batch_size": BATCH}
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    x, y = dataset()
    data = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    if distributed:
        sampler = DistributedSampler(data, num_replicas=dist.get_world_size(), rank=dist.get_rank(), seed=11)
        loader = DataLoader(data, batch_size=PER_RANK, sampler=sampler)
        return (loader,), {"epochs": EPOCHS, "layout": "batch_first"}
    sampler = DistributedSampler(data, num_replicas=1, rank=0, seed=11)
    loader = EpochLoader(DataLoader(data, batch_size=2 * PER_RANK, sampler=sampler))
    return (loader,), {"epochs": EPOCHS, "layout": "batch_first"}


def result(tr: Trainer) -> dict:
    return {"model": {k: v.detach().clone() for k, v in tr.model.state_dict().items()},
            "history": [dict(r) for r in tr.history.records], "iteration": tr.iteration,
            "sync": tr.distributed.mode if tr.distributed is not None else None,
            "ddp": type(getattr(tr.distributed, "train_model", None)).__mro__[1].__name__}


class PoissonSpikes(torch.utils.data.Dataset):
    """The samples of :func:`dataset` re-encoded on the fly with the *global* torch RNG (different on every rank)."""

    def __init__(self) -> None:
        x, y = dataset()
        self.rates = torch.as_tensor(x.mean(axis=1) * 0.9 + 0.05)  # [N, F] rates per step
        self.y = torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.rand(T, FEATURES, dtype=torch.float64) < self.rates[i]).double(), self.y[i]


class Crash(Exception):
    """Raised on every rank during iteration :data:`CRASH_AT`, after ``last.pt`` of iteration ``CRASH_AT - 1``."""


CRASH_AT, RESUMED_EPOCHS = 5, 4


class CrashAt:
    """A callback that ends training abruptly during iteration ``CRASH_AT``: by an exception or a process exit."""

    def __init__(self, hard: bool) -> None:
        self.hard = hard

    def on_batch_end(self, trainer: Trainer, logs: dict) -> None:
        if trainer.iteration == CRASH_AT:
            if self.hard:
                os._exit(0)
            raise Crash()


def seeded(directory: Optional[str] = None, checkpoint_every: Optional[int] = None) -> Trainer:
    """A BPTT trainer with the global torch RNG seeded per rank (the encoder draws from it)."""
    import torch.distributed as dist

    torch.manual_seed(100 + dist.get_rank())
    return trainer("bptt", True, checkpoint_dir=directory, checkpoint_every=checkpoint_every)


def straight_run(out_dir: Path) -> None:
    """The uninterrupted run the resumed one must reproduce: ``OUT/straight_rank<r>.pt``."""
    import torch.distributed as dist

    tr = seeded()
    tr.fit(PoissonSpikes(), epochs=RESUMED_EPOCHS, batch_size=BATCH)
    torch.save(result(tr), out_dir / f"straight_rank{dist.get_rank()}.pt")


def interrupted_run(directory: str, hard: bool) -> None:
    """Train with ``last.pt`` every 2 iterations until the crash during iteration ``CRASH_AT``."""
    tr = seeded(directory, checkpoint_every=2)
    tr.callbacks.append(CrashAt(hard))
    try:
        tr.fit(PoissonSpikes(), epochs=RESUMED_EPOCHS, batch_size=BATCH)
    except Crash:
        return
    raise AssertionError("the run did not crash")


def resumed_run(out_dir: Path, directory: str) -> None:
    import torch.distributed as dist

    torch.manual_seed(12345)  # whatever the state: resume restores this rank's own
    tr = trainer("bptt", True, checkpoint_dir=directory)
    tr.fit(PoissonSpikes(), epochs=RESUMED_EPOCHS, batch_size=BATCH, resume_from=Path(directory) / "last.pt")
    torch.save(result(tr), out_dir / f"resumed_rank{dist.get_rank()}.pt")


def main(out: str, what: str, directory: str = "") -> None:
    import torch.distributed as dist

    init_distributed()  # from torchrun's environment (the trainers would do it too)
    out_dir = Path(out)
    if what == "equivalence":
        for case in CASES:
            tr = trainer(case, True)
            args, kwargs = fit_args(case, True)
            tr.fit(*args, **kwargs)
            torch.save(result(tr), out_dir / f"{case}_rank{dist.get_rank()}.pt")
        what = "crash-resume"
    if what == "crash-resume":
        straight_run(out_dir)
        interrupted_run(directory, hard=False)
        resumed_run(out_dir, directory)
    elif what == "train":
        straight_run(out_dir)
        interrupted_run(directory, hard=True)
    elif what == "resume":
        resumed_run(out_dir, directory)
    else:
        raise SystemExit(f"unknown mode {what!r}")
    dist.destroy_process_group()

if __name__ == "__main__":
    main(*sys.argv[1:])
