r"""Data-parallel training with torch.distributed: one process per device, launched with ``torchrun``.

::

    # torchrun --nproc_per_node=2 train.py
    trainer = Trainer(model, objective, algorithm=BPTT(), distributed=True, checkpoint_dir="runs/a")
    trainer.fit((x, y), epochs=10, batch_size=64)      # 64 samples per step in total, 32 per rank

``Trainer(..., distributed=True)`` (or ``distributed=Distributed(...)`` for
options) makes the trainer one rank of a data-parallel job:

* **Process group.** An existing default group is used; otherwise one is
  initialised from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``, ``MASTER_PORT``), with NCCL when the model is on a CUDA
  device and gloo otherwise.  Every rank starts from rank 0's parameters
  (broadcast when the trainer is built).
* **Gradients.** BPTT and TBPTT (autograd) run the model wrapped in
  :class:`torch.nn.parallel.DistributedDataParallel`, which all-reduces the
  gradients bucket by bucket during ``backward``.  e-prop computes its
  gradients outside autograd, so for it (and any other algorithm) the
  trainer all-reduces the ``.grad`` of every parameter explicitly, in one flat
  tensor, right before the optimiser step (``gradient_sync="allreduce"``; the
  adaptive-feedback update of e-prop is all-reduced the same way).  Either
  way the result is the gradient of the *global* batch:

  .. math::  g = \sum_r \frac{n_r}{N} g_r, \qquad N = \sum_r n_r

  where ``g_r`` is rank ``r``'s gradient of its batch-mean loss on its ``n_r``
  samples.  For losses that are means over the batch (all ntgraph objectives,
  and weight regularisers, which do not depend on the batch) this equals the
  one-process gradient of the whole batch, up to rounding; with equal ``n_r``
  it is the plain average that DDP computes.  (Activity regularisers such as
  :class:`~.regularizers.FiringRateTarget` square a batch mean, so they are
  per-rank approximations.)
* **Data.** ``fit(..., batch_size=B)`` means ``B`` samples per optimiser
  step *in total* (the global batch): every rank draws the same permutation
  from the trainer's seeded generator and takes its contiguous share of each
  global batch (:class:`ShardedBatches`), so 1 rank with ``B`` and ``R`` ranks
  with ``B`` train on the same samples per step and give the same weights.
  ``B`` need not be divisible by ``R`` (shares differ by at most one sample);
  a last global batch with fewer than ``R`` samples is dropped.  Iterables of
  batches (a ``DataLoader`` with a :class:`torch.utils.data.DistributedSampler`)
  are used as given: each rank's batches are its own (the per-rank batch
  convention of PyTorch), and the sampler's ``set_epoch(epoch)`` is called at
  the start of every pass.  Every rank must yield the same number of batches per pass.
* **Metrics.** Epoch records (loss, metrics, validation) are means over the
  samples of all ranks (sums and counts all-gathered); per-batch logs given
  to callbacks are the rank's own.  A stop requested on any rank (a callback,
  the NaN guard) stops every rank after the same batch.
* **Checkpoints** are written by rank 0 only, followed by a barrier; every rank
  resumes from the same file (the directory must be shared between nodes).
  The file holds every rank's random states (``rank_rng``: data encoded on the
  fly draws from each rank's own global RNG) and, mid-epoch, the running sums
  of all ranks, so a resumed run continues bit-identically.
* **Ctrl-C**: the trainer's SIGINT handling is off (ranks would see the signal
  at different batches); ``checkpoint_every`` bounds what an interruption loses.

Calls that communicate (``fit``, ``evaluate``, ``save``) must be made on every rank.
"""

from __future__ import annotations

import datetime
import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from ntgraph.errors import ValidationError

from .algorithms import BPTT, TBPTT
from .batches import Batches

__all__ = ["Distributed", "DataParallelRun", "ShardedBatches", "init_distributed", "rank", "world_size",
           "is_main_process"]

log = logging.getLogger("ntgraph.training")

SYNC_MODES = ("auto", "ddp", "allreduce")
ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Distributed:
    """Options of a data-parallel run (``Trainer(distributed=Distributed(...))``; ``True`` means the defaults).

    ``backend``: ``"nccl"``, ``"gloo"`` or None (NCCL for a CUDA model, else
    gloo); used only when the trainer initialises the process group.
    ``gradient_sync``: ``"ddp"`` (wrap the model in DistributedDataParallel;
    autograd algorithms only), ``"allreduce"`` (all-reduce the ``.grad`` before
    each optimiser step; any algorithm) or ``"auto"`` (DDP for BPTT/TBPTT,
    all-reduce otherwise, e.g. e-prop).  ``find_unused_parameters`` is passed to
    DDP; ``sync_buffers``: DDP re-broadcasts rank 0's buffers before every
    forward (its ``forward_sync_buffers``; ntgraph's buffers are constants, so
    False saves a collective per forward).  ``timeout_s``: how long a
    collective may wait for the other ranks before failing (None: torch's default, 10 min for NCCL / 30 min gloo).
    """

    backend: Optional[str] = None
    gradient_sync: str = "auto"
    find_unused_parameters: bool = False
    sync_buffers: bool = True
    timeout_s: Optional[float] = None

    def __post_init__(self) -> None:
        if self.backend not in (None, "nccl", "gloo", "mpi"):
            raise ValidationError(f"Distributed.backend: expected 'nccl', 'gloo', 'mpi' or None, got {self.backend!r}")
        if self.gradient_sync not in SYNC_MODES:
            raise ValidationError(f"Distributed.gradient_sync: expected one of {SYNC_MODES}, got {self.gradient_sync!r}")
        if self.timeout_s is not None and not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise ValidationError(f"Distributed.timeout_s: expected a positive number of seconds, got {self.timeout_s!r}")


# ----------------------------------------------------------------------------- process group
def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed): the process that writes files and prints."""
    return rank() == 0


def init_distributed(backend: Optional[str] = None, timeout_s: Optional[float] = None) -> torch.device:
    """Initialise the default process group from torchrun's environment (if not done yet); return this rank's device.

    The device is ``cuda:LOCAL_RANK`` (made current) for NCCL, else the CPU.
    ``backend=None`` picks NCCL when CUDA is available, else gloo.  Raises
    :class:`~ntgraph.errors.ValidationError` outside torchrun (missing ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` or ``MASTER_PORT``).
    """
    if not dist.is_available():
        raise ValidationError("distributed training: this torch build has no torch.distributed")
    if not dist.is_initialized():
        missing = [k for k in ENV if k not in os.environ]
        if missing:
            raise ValidationError(
                f"distributed training: environment variables {missing} are not set; launch with torchrun "
                f"(e.g. torchrun --nproc_per_node=2 train.py) or call torch.distributed.init_process_group first"
            )
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        kwargs: dict[str, Any] = {"backend": backend}
        if timeout_s is not None:
            kwargs["timeout"] = datetime.timedelta(seconds=float(timeout_s))
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(**kwargs)
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----------------------------------------------------------------------------- data
class ShardedBatches(Batches):
    """:class:`~.batches.Batches` of ``batch_size`` samples in total, each rank taking its contiguous share.

    Every rank draws the same permutation (the generators are seeded alike),
    cuts it into global batches of ``batch_size`` and keeps part ``rank`` of
    ``torch.tensor_split(batch, world_size)``.  A last global batch with fewer
    than ``world_size`` samples is dropped (some rank would get none).
    """

    def __init__(self, dataset: Any, batch_size: int, *, rank: int, world_size: int, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size, **kwargs)
        self.rank, self.world_size = int(rank), int(world_size)

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest >= self.world_size and not self.drop_last else 0)

    def _batches(self, order: Tensor, skip: int) -> Iterator[tuple[Tensor, Tensor]]:
        for k in range(skip, len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size]
            yield self._collate(torch.tensor_split(idx, self.world_size)[self.rank])


class _EpochSource:
    """An iterable of batches whose sampler (``DistributedSampler``) gets ``set_epoch`` at the start of each pass."""

    def __init__(self, data: Any, sampler: Any, trainer: Any) -> None:
        self.data, self.sampler, self.trainer = data, sampler, trainer

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator:
        self.sampler.set_epoch(int(self.trainer.epoch))
        return iter(self.data)


# ----------------------------------------------------------------------------- gradients
class _HookState:
    def __init__(self, group: Any) -> None:
        self.group = group
        self.weight = 1.0


def _weighted_allreduce_hook(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks the annotations
    """DDP comm hook ``(state, GradBucket) -> Future[Tensor]``: ``sum_r w_r g_r`` with ``w_r = n_r / N``.

    (DDP's default hook computes ``mean_r g_r``; the two agree when every rank has the same ``n_r``.)
    """
    buf = bucket.buffer()
    buf.mul_(state.weight)
    fut = dist.all_reduce(buf, group=state.group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def _buffer_option(sync: bool) -> dict[str, bool]:
    """DDP's keyword for per-forward buffer sync (``forward_sync_buffers`` from torch 2.13, else ``broadcast_buffers``)."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers": bool(sync)}


class _SimulationDDP(DistributedDataParallel):
    """DDP whose unknown attributes (``batch_first``, ``output_sources``, ...) are the wrapped model's."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


class _AveragingOptimizer:
    """All-reduces the gradients (``sum_r w_r g_r``) before each ``step`` of the wrapped optimiser."""

    def __init__(self, optimizer: Any, run: "DataParallelRun") -> None:
        self.optimizer, self.run = optimizer, run

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Any = None) -> Any:
        self.run.allreduce_gradients([p for g in self.optimizer.param_groups for p in g["params"]])
        return self.optimizer.step(closure) if closure is not None else self.optimizer.step()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


class _AveragedFeedback:
    """e-prop feedback whose ``update`` receives the global gradient ``sum_r w_r g_r`` (identical ``B`` on every rank)."""

    def __init__(self, feedback: Any, run: "DataParallelRun") -> None:
        self.feedback, self.run = feedback, run

    def update(self, key: str, grad_w_out: Tensor) -> None:
        g = grad_w_out * self.run.weight
        dist.all_reduce(g, group=self.run.group)
        self.feedback.update(key, g)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.feedback, name)


# ----------------------------------------------------------------------------- the run
class DataParallelRun:
    """The distributed side of a :class:`~.trainer.Trainer` (built by it for ``distributed=``; see the module docstring)."""

    def __init__(self, model: torch.nn.Module, algorithm: Any, options: Union[bool, Distributed]) -> None:
        self.options = Distributed() if options is True else options
        if not isinstance(self.options, Distributed):
            raise ValidationError(f"Trainer distributed: expected True, False or a Distributed(...), got {options!r}")
        reference = next(iter(model.parameters()))
        backend = self.options.backend or ("nccl" if reference.device.type == "cuda" else "gloo")
        init_distributed(backend, self.options.timeout_s)
        self.group = dist.group.WORLD
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.device = reference.device
        if dist.get_backend() == "nccl" and self.device.type != "cuda":
            raise ValidationError(f"Trainer distributed: the NCCL backend needs the model on a CUDA device, it is on {self.device}")
        self.weight = 1.0 / self.world_size
        mode = self.options.gradient_sync
        if mode == "auto":
            mode = "ddp" if isinstance(algorithm, (BPTT, TBPTT)) else "allreduce"
        elif mode == "ddp" and hasattr(algorithm, "compute_gradients"):
            raise ValidationError(
                f"Distributed.gradient_sync='ddp': {type(algorithm).__name__} computes its gradients outside autograd, "
                f"where DDP's hooks do not see them; use gradient_sync='allreduce' (or 'auto')"
            )
        self.mode = mode
        self.model = model
        if mode == "ddp":
            self._hook = _HookState(self.group)
            self.train_model: torch.nn.Module = _SimulationDDP(
                model, device_ids=None, find_unused_parameters=self.options.find_unused_parameters,
                **_buffer_option(self.options.sync_buffers))
            self.train_model.register_comm_hook(self._hook, _weighted_allreduce_hook)
        else:
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, src=0, group=self.group)
            self.train_model = model
            feedback = getattr(algorithm, "feedback", None)
            if feedback is not None and not isinstance(feedback, _AveragedFeedback) and self._feedback_learns(feedback):
                algorithm.feedback = _AveragedFeedback(feedback, self)
        log.info("distributed: rank %d of %d, backend %s, gradients by %s", self.rank, self.world_size,
                 dist.get_backend(), "DistributedDataParallel" if mode == "ddp" else "explicit all-reduce")

    @staticmethod
    def _feedback_learns(feedback: Any) -> bool:
        from .eprop import AdaptiveFeedback, RandomFeedback, SymmetricFeedback

        if isinstance(feedback, AdaptiveFeedback):
            return True
        return hasattr(feedback, "update") and not isinstance(feedback, (SymmetricFeedback, RandomFeedback))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    # -- data
    def source(self, data: Any, batch_size: Optional[int], shuffle: bool, drop_last: bool, generator: torch.Generator,
               batch_first: bool, trainer: Any) -> Any:
        """The rank's batch source: :class:`ShardedBatches` for datasets, else the iterable (``set_epoch`` wired)."""
        if batch_size is not None:
            return ShardedBatches(data, batch_size, rank=self.rank, world_size=self.world_size, shuffle=shuffle,
                                  drop_last=drop_last, generator=generator, batch_first=batch_first)
        sampler = getattr(data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            return _EpochSource(data, sampler, trainer)
        return data

    # -- gradients
    def begin_batch(self, n: int) -> None:
        """Set this rank's gradient weight ``n / N`` for the coming step (``N``: the global batch, all-reduced)."""
        total = torch.tensor([float(n)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(total, group=self.group)
        self.weight = float(n) / float(total.item())
        if self.mode == "ddp":
            self._hook.weight = self.weight

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def allreduce_gradients(self, params: list[Tensor]) -> None:
        """``p.grad <- sum_r w_r p.grad_r`` for every parameter, in one flat all-reduce.

        A parameter without a gradient on every rank keeps ``grad=None``; one
        with a gradient on some ranks gets the others' contributions as zeros.
        """
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        dtype = torch.promote_types(params[0].dtype, torch.float32)
        for p in params[1:]:
            dtype = torch.promote_types(dtype, p.dtype)
        pieces = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype) * self.weight
                  for p in params]
        pieces.append(torch.tensor([0.0 if p.grad is None else 1.0 for p in params], dtype=dtype, device=params[0].device))
        flat = torch.cat(pieces).to(self._comm_device())
        dist.all_reduce(flat, group=self.group)
        flat = flat.to(params[0].device)
        has = flat[-len(params):]
        offset = 0
        for k, p in enumerate(params):
            chunk = flat[offset:offset + p.numel()]
            offset += p.numel()
            if float(has[k]) > 0:
                p.grad = chunk.view_as(p).to(p.dtype).clone()

    def wrap_optimizer(self, optimizer: Any) -> Any:
        """The optimiser the algorithm steps: ``optimizer`` (DDP) or one that all-reduces first."""
        return optimizer if self.mode == "ddp" else _AveragingOptimizer(optimizer, self)

    # -- bookkeeping
    def any_stop(self, stop: bool) -> bool:
        """True if any rank asks to stop (one all-reduce of a flag)."""
        flag = torch.tensor([1.0 if stop else 0.0], device=self._comm_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        return bool(flag.item() > 0)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order (``all_gather_object``)."""
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, obj, group=self.group)
        return parts

    def gather_means(self, sums: Mapping[str, float], counts: Mapping[str, int]) -> tuple[dict[str, float], dict[str, int]]:
        """Sums and counts of all ranks added up (all-gather of the dicts, so ranks may miss keys)."""
        parts = self.gather((dict(sums), dict(counts)))
        total_s: dict[str, float] = {}
        total_c: dict[str, int] = {}
        for s, c in parts:
            for k, v in s.items():
                total_s[k] = total_s.get(k, 0.0) + v
                total_c[k] = total_c.get(k, 0) + c[k]
        return total_s, total_c
