"""Data-parallel training with torch.distributed (backends/torchsim/learning/distributed.py).

Real 2-process runs (torchrun, gloo on CPU) of ``tests/_distributed_worker.py``
against one-process trainers on the whole batch: with float64 models the
weights after 6 Adam steps agree within ``atol = 1e-12`` (measured: at most
4.4e-16, the rounding of the batch mean's summation order) for BPTT and
truncated BPTT (DistributedDataParallel), e-prop with adaptive feedback and
BPTT with the explicit gradient all-reduce, and BPTT on a ``DataLoader`` with
a ``DistributedSampler`` (per-rank batches of 5; ``set_epoch`` every pass).
The global batches of 7 samples are split 4 + 3 over the ranks, so the
per-rank weights ``n_r / N`` are exercised (plain averaging of the ranks'
gradients ends 0.05 away from the reference; a sampler without ``set_epoch`` 0.026).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.torchsim.learning import Trainer
from backends.torchsim.learning.distributed import Distributed, ShardedBatches, init_distributed
from backends.torchsim.learning.batches import Batches
from ntgraph.errors import ValidationError

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "_distributed_worker.py"
ATOL_WEIGHTS = 1e-12  # float64
ATOL_LOSS = 1e-12  # epoch means of float64 losses
ATOL_ACCURACY = 1e-6  # accuracy is computed in float32

spec = importlib.util.spec_from_file_location("_distributed_worker", WORKER)
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)


def torchrun(*args: str, timeout: float = 240) -> None:
    """``torchrun --standalone --nproc_per_node=2 tests/_distributed_worker.py ARGS`` (a free port, gloo)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One launch: every equivalence case, then the crash + resume from rank 0's checkpoint."""
    out = tmp_path_factory.mktemp("distributed")
    torchrun(str(out), "equivalence", str(out / "ckpt"))
    return out


def load(out: Path, name: str, rank: int) -> dict:
    return torch.load(out / f"{name}_rank{rank}.pt", weights_only=True)


def assert_same_training(reference: Trainer, got: dict) -> None:
    ref = reference.model.state_dict()
    assert set(ref) == set(got["model"])
    for key, value in ref.items():
        torch.testing.assert_close(got["model"][key], value, atol=ATOL_WEIGHTS, rtol=0, msg=key)
    assert got["iteration"] == reference.iteration
    assert len(got["history"]) == len(reference.history.records)
    for mine, theirs in zip(got["history"], reference.history.records):
        assert set(mine) == set(theirs)
        for key in theirs:
            if key == "time":
                continue
            tol = ATOL_ACCURACY if "accuracy" in key else ATOL_LOSS
            assert mine[key] == pytest.approx(theirs[key], abs=tol), key


@pytest.mark.parametrize("case", list(worker.CASES))
def test_two_ranks_with_half_batches_match_one_process_with_the_whole_batch(runs, case):
    reference = worker.trainer(case, False)
    initial = {k: v.clone() for k, v in reference.model.state_dict().items()}
    args, kwargs = worker.fit_args(case, False)
    reference.fit(*args, **kwargs)
    moved = max(float((reference.model.state_dict()[k] - v).abs().max()) for k, v in initial.items())
    assert moved > 1e-2  # the comparison is not between untrained models
    rank0, rank1 = load(runs, case, 0), load(runs, case, 1)
    assert_same_training(reference, rank0)
    for key, value in rank0["model"].items():  # the ranks hold bit-identical replicas
        assert torch.equal(rank1["model"][key], value), key
    expected = {"bptt": ("ddp", "DistributedDataParallel"), "tbptt": ("ddp", "DistributedDataParallel"),
                "eprop": ("allreduce", "Module"), "bptt_allreduce": ("allreduce", "Module"),
                "bptt_sampler": ("ddp", "DistributedDataParallel")}[case]
    assert (rank0["sync"], rank0["ddp"]) == expected


def assert_bit_identical_resume(out: Path) -> None:
    for rank in (0, 1):
        straight, resumed = load(out, "straight", rank), load(out, "resumed", rank)
        assert resumed["iteration"] == straight["iteration"] == 3 * worker.RESUMED_EPOCHS
        for key, value in straight["model"].items():
            assert torch.equal(resumed["model"][key], value), (rank, key)
        for mine, theirs in zip(resumed["history"], straight["history"], strict=True):
            for key in ("loss", "accuracy"):  # the partial epoch's sums are added in another order
                assert mine[key] == pytest.approx(theirs[key], abs=ATOL_LOSS), (rank, key)


def test_resume_on_every_rank_from_rank0_checkpoint(runs):
    """Crash during iteration 5 (``last.pt`` of iteration 4, mid-epoch 2), resume on both ranks, finish 4 epochs.

    The data are re-encoded on the fly from each rank's own global RNG, so the
    resume must restore every rank's random state (the checkpoint's ``rank_rng``).
    """
    assert_bit_identical_resume(runs)
    assert sorted(p.name for p in (runs / "ckpt").iterdir()) == ["best.pt", "last.pt"]  # rank 0's files only
    ranks = torch.load(runs / "ckpt" / "last.pt", weights_only=True)["rank_rng"]
    assert not torch.equal(ranks[0]["torch"], ranks[1]["torch"])  # rank 0's state alone would not do


@pytest.mark.slow
def test_resume_in_new_processes_after_a_hard_exit(tmp_path):
    """Both ranks exit with ``os._exit`` during iteration 5; a second torchrun launch resumes from ``last.pt``."""
    directory = tmp_path / "ckpt"
    torchrun(str(tmp_path), "train", str(directory))
    ckpt = torch.load(directory / "last.pt", weights_only=True)
    assert ckpt["counters"]["iteration"] == worker.CRASH_AT - 1 and len(ckpt["rank_rng"]) == 2
    torchrun(str(tmp_path), "resume", str(directory))
    assert_bit_identical_resume(tmp_path)


# ----------------------------------------------------------------------------- in-process pieces
def test_sharded_batches_split_each_global_batch():
    x = np.arange(11 * 2 * 1, dtype=np.float64).reshape(11, 2, 1)
    y = np.arange(11)
    full = Batches((x, y), 4, generator=torch.Generator().manual_seed(3))
    shards = [ShardedBatches((x, y), 4, rank=r, world_size=3, generator=torch.Generator().manual_seed(3))
              for r in range(3)]
    whole = [b[1].tolist() for b in full]
    parts = [[b[1].tolist() for b in s] for s in shards]
    # global batches 4, 4, 3 -> shares (2, 1, 1), (2, 1, 1), (1, 1, 1); their union is the one-process batch, in order
    assert [len(s) for s in shards] == [3, 3, 3]
    for k, batch in enumerate(whole):
        assert sum((p[k] for p in parts), []) == batch
    assert [len(p[0]) for p in parts] == [2, 1, 1]


def test_sharded_batches_drop_a_last_batch_smaller_than_the_world():
    x, y = np.zeros((9, 2, 1)), np.arange(9)
    shards = [ShardedBatches((x, y), 4, rank=r, world_size=2, shuffle=False) for r in range(2)]
    assert [len(s) for s in shards] == [2, 2]  # the 9th sample alone cannot be split over 2 ranks
    assert [b[1].tolist() for b in shards[1]] == [[2, 3], [6, 7]]


def test_distributed_options_are_checked():
    with pytest.raises(ValidationError, match="gradient_sync"):
        Distributed(gradient_sync="horovod")
    with pytest.raises(ValidationError, match="backend"):
        Distributed(backend="tcp")
    with pytest.raises(ValidationError, match="timeout_s"):
        Distributed(timeout_s=0)


def test_outside_torchrun_the_error_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValidationError, match="torchrun"):
        init_distributed()
    with pytest.raises(ValidationError, match="torchrun"):
        worker.trainer("bptt", True)


@pytest.fixture
def one_rank_group(tmp_path):
    """A gloo process group of one rank in this process (destroyed afterwards)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_ddp_is_refused_for_e_prop(one_rank_group):
    with pytest.raises(ValidationError, match="outside autograd"):
        Trainer(worker.trainer("eprop", False).model, worker.trainer("eprop", False).objective,
                algorithm=worker.CASES["eprop"][0](), distributed=Distributed(gradient_sync="ddp"))


@pytest.mark.parametrize("case", ["bptt", "eprop"])
def test_one_rank_equals_no_distribution_bit_for_bit(one_rank_group, case):
    """An existing group is used as is; with one rank the weights n_r/N are 1 and nothing changes."""
    results = []
    for distributed in (False, True):
        tr = worker.trainer(case, distributed)
        tr.fit(worker.dataset(), epochs=1, batch_size=worker.BATCH)
        results.append(tr.model.state_dict())
    for key, value in results[0].items():
        assert torch.equal(results[1][key], value), key
