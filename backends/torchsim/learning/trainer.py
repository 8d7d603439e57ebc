"""The trainer: epochs of an algorithm's ``train_step`` with validation, callbacks, checkpoints and resume.

::

    trainer = Trainer(model, CrossEntropyOverTime(reduce="mean"), algorithm=BPTT(),
                      optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
                      scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 10, 0.5),
                      callbacks=[EarlyStopping("val_loss", patience=5)], checkpoint_dir="runs/a", seed=0)
    history = trainer.fit((x_train, y_train), (x_val, y_val), epochs=30, batch_size=32)

The model stays a plain :class:`~backends.torchsim.module.SimulationModule`
(an ``nn.Module``); the trainer only drives it.

**Data.** With ``batch_size=``, ``train``/``val`` are datasets (see
:mod:`.batches`) batched by the trainer, shuffled by its own generator seeded
from ``seed``.  Without it they are iterables of ``(x, y)`` batches, re-iterated
every pass (a list, a ``torch.utils.data.DataLoader``, ...); ``x`` is a tensor,
an array or a dict of them per Input, in the model's layout (``[T, B, F]``, or
``[B, T, F]`` if compiled with ``batch_first``) unless ``layout=`` says
otherwise (a DataLoader over per-sample ``[T, F]`` data yields ``"batch_first"``).

**Epochs.** An epoch is one pass over ``train``, or ``steps_per_epoch``
batches if given (passes then wrap around).  ``epochs``/``iterations`` are
totals, like Lightning's ``max_epochs``/``max_steps``: a trainer resumed after
epoch 2 and fitted with ``epochs=4`` trains two more.  After every epoch:
validation (``torch.no_grad``, the model's plain forward), a History record,
the scheduler (``scheduler_interval="epoch"``), the callbacks' ``on_epoch_end``,
then ``last.pt`` and, on improvement of ``monitor``, ``best.pt``.

**Resume** is bit-identical: a checkpoint holds the model, optimiser,
scheduler, counters, history, callback and algorithm states, and every random
state (torch, numpy, Python, the data generator), plus the random state at the
start of the current pass and how many batches of it were used, so a run
stopped mid-pass replays the pass's order and continues with the next batch.
``resume``/``resume_from`` take a file or a checkpoint directory (the newest
readable ``*.pt`` in it, corrupt ones skipped with a warning).

**Interruptions.** ``checkpoint_every=k`` also writes ``last.pt`` every ``k``
iterations (with the partial epoch's running means and step count, so a run
resumed mid-epoch ends its epochs where an uninterrupted one would).  Ctrl-C
(SIGINT) during :meth:`fit` finishes the current batch, writes ``last.pt`` and
raises :class:`~ntgraph.errors.TrainingInterrupted` naming it; a second Ctrl-C
aborts at once (see :mod:`.interrupts`; ``handle_sigint = False`` opts out).
A run killed outright loses at most the iterations since its last checkpoint:
writes are atomic, so ``last.pt`` is always the previous complete one.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ntgraph.errors import TrainingInterrupted, ValidationError

from .algorithms import BPTT, total_loss
from .batches import Batches, is_array_dataset
from .callbacks import StopOnNonFinite
from .checkpoint import (latest_checkpoint, load_checkpoint, remove_stale_temp_files, rng_state, save_checkpoint,
                         set_rng_state)
from .history import History
from .interrupts import SigintGuard
from .regularizers import prepare_regularizers

__all__ = ["Trainer"]

log = logging.getLogger("ntgraph.training")

RESERVED = ("loss", "epoch", "iteration", "batch", "lr", "time")
LAYOUTS = (None, "time_major", "batch_first")


class _Mean:
    """Batch-size-weighted running means of the loss and metrics of one epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, float], n: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
            self.counts[k] = self.counts.get(k, 0) + n

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


class _ClippedOptimizer:
    """Clips the global gradient norm to ``max_norm`` before each ``step`` of the wrapped optimiser."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_norm: float) -> None:
        self.optimizer = optimizer
        self.max_norm = max_norm

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Optional[Callable] = None) -> Any:
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.max_norm)
        return self.optimizer.step(closure) if closure is not None else self.optimizer.step()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


def _is_scheduler(obj: Any) -> bool:
    return hasattr(obj, "step") and hasattr(obj, "state_dict") and hasattr(obj, "optimizer")


def _positive_int(value: Any, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{name}: expected a positive int, got {value!r}")
    return value


class Trainer:
    """Train a compiled model with an algorithm (BPTT, TBPTT, e-prop) on an objective.

    ``optimizer``: an optimiser, a factory ``params -> optimizer``, or None
    (Adam, lr 1e-3).  ``scheduler``: a torch LR scheduler, a factory
    ``optimizer -> scheduler``, or None; stepped every epoch or every
    iteration (``scheduler_interval``); ``ReduceLROnPlateau`` is stepped with the
    epoch's ``monitor`` value.  ``metrics``: ``{name: fn(y, target)}`` on the
    objective's Output (time-major), default ``objective.default_metrics()``.
    ``monitor``/``mode``: the value ``best.pt`` tracks (default ``val_loss`` when
    there is validation data, else ``loss``; ``mode="auto"`` is ``max`` for
    metrics with ``higher_is_better``).  ``grad_clip``: clip the global gradient
    norm before every optimiser step.  ``progress``: a tqdm bar on stderr.
    ``distributed``: ``True`` or a :class:`~.distributed.Distributed` makes
    this process one rank of a data-parallel run under ``torchrun``
    (DistributedDataParallel for BPTT/TBPTT, explicit gradient all-reduce for
    e-prop; ``batch_size`` is the global batch; rank 0 writes checkpoints; see
    :mod:`.distributed` and ``docs/distributed.md``).
    ``checkpoint_every``: also write ``last.pt`` every that many iterations
    (needs ``checkpoint_dir``).  Set ``handle_sigint = False`` on the trainer
    (or the class) to leave Ctrl-C to Python's default handling.
    """

    #: Ctrl-C during fit saves a checkpoint at the end of the current batch (see :mod:`.interrupts`).
    handle_sigint: bool = True

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Any,
        optimizer: Union[torch.optim.Optimizer, Callable, None] = None,
        algorithm: Any = None,
        metrics: Optional[Mapping[str, Callable]] = None,
        callbacks: Sequence[Any] = (),
        scheduler: Any = None,
        scheduler_interval: str = "epoch",
        checkpoint_dir: Union[str, Path, None] = None,
        monitor: Optional[str] = None,
        mode: str = "auto",
        seed: int = 0,
        progress: bool = True,
        grad_clip: Optional[float] = None,
        checkpoint_every: Optional[int] = None,
        distributed: Any = False,
    ) -> None:
        self.model = model
        self.objective = objective
        if not callable(objective) or not isinstance(getattr(objective, "output", None), str):
            raise ValidationError(f"Trainer objective: expected a callable with an 'output' name, got {objective!r}")
        self.algorithm = algorithm if algorithm is not None else BPTT()
        if not hasattr(self.algorithm, "train_step"):
            raise ValidationError(f"Trainer algorithm: expected an object with train_step(...), got {self.algorithm!r}")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValidationError("Trainer: the model has no learnable parameters (mark weights or parameters learnable)")
        half = sorted({str(p.dtype).replace("torch.", "") for p in params if p.dtype in (torch.float16, torch.bfloat16)})
        if half:  # an optimiser step below half an ulp of a weight is lost (docs/precision.md)
            raise ValidationError(
                f"Trainer model: learnable parameters in {', '.join(half)}; training needs float32 or float64 "
                f"(compile with dtype='float32', train, then compile module.to_graph() with dtype='bfloat16' for inference)"
            )
        if optimizer is None:
            optimizer = torch.optim.Adam(params, lr=1e-3)
        elif not isinstance(optimizer, torch.optim.Optimizer):
            if not callable(optimizer):
                raise ValidationError(f"Trainer optimizer: expected an optimizer or a factory params -> optimizer, got {optimizer!r}")
            optimizer = optimizer(params)
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise ValidationError(f"Trainer optimizer: the factory returned {optimizer!r}, not a torch optimizer")
        self.optimizer = optimizer
        if scheduler is not None and not _is_scheduler(scheduler):
            if not callable(scheduler):
                raise ValidationError(f"Trainer scheduler: expected an LR scheduler or a factory optimizer -> scheduler, got {scheduler!r}")
            scheduler = scheduler(optimizer)
        if scheduler is not None and getattr(scheduler, "optimizer", None) is not optimizer:
            raise ValidationError("Trainer scheduler: it drives a different optimizer than the trainer's")
        self.scheduler = scheduler
        if scheduler_interval not in ("epoch", "iteration"):
            raise ValidationError(f"Trainer scheduler_interval: expected 'epoch' or 'iteration', got {scheduler_interval!r}")
        if scheduler_interval == "iteration" and isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise ValidationError("Trainer: ReduceLROnPlateau needs an epoch's metric; use scheduler_interval='epoch'")
        self.scheduler_interval = scheduler_interval
        if metrics is None:
            metrics = objective.default_metrics() if hasattr(objective, "default_metrics") else {}
        for name, fn in metrics.items():
            if not isinstance(name, str) or name in RESERVED or name.startswith("val_") or not callable(fn):
                raise ValidationError(
                    f"Trainer metrics: {name!r}: expected a callable under a name that is not one of {RESERVED} "
                    f"and does not start with 'val_'"
                )
        self.metrics = dict(metrics)
        callbacks = list(callbacks)
        if not any(isinstance(cb, StopOnNonFinite) for cb in callbacks):
            callbacks.insert(0, StopOnNonFinite())
        self.callbacks = callbacks
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = _positive_int(checkpoint_every, "Trainer checkpoint_every")
        if self.checkpoint_every is not None and self.checkpoint_dir is None:
            raise ValidationError(f"Trainer checkpoint_every={checkpoint_every}: needs checkpoint_dir= to write into")
        self.monitor = monitor
        if mode not in ("auto", "min", "max"):
            raise ValidationError(f"Trainer mode: expected 'auto', 'min' or 'max', got {mode!r}")
        self.mode = mode
        if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
            raise ValidationError(f"Trainer grad_clip: expected a positive max norm, got {grad_clip!r}")
        self._step_optimizer = optimizer if grad_clip is None else _ClippedOptimizer(optimizer, float(grad_clip))
        self.distributed: Any = None  # a DataParallelRun when training data-parallel (see .distributed)
        if distributed:
            from .distributed import DataParallelRun

            self.distributed = DataParallelRun(model, self.algorithm, distributed)
            self._step_optimizer = self.distributed.wrap_optimizer(self._step_optimizer)
            self.handle_sigint = False  # ranks would see Ctrl-C at different batches; use checkpoint_every
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.progress = bool(progress)

        self.history = History()
        self.epoch = 0
        self.iteration = 0
        self.stop = False
        self.stop_reason: Optional[str] = None
        self.best: Optional[float] = None
        self._iter: Optional[Iterator] = None
        self._pass_rng: Optional[dict] = None
        self._batches_in_pass = 0
        self._pending_rng: Optional[dict] = None
        self._pending_position: Optional[dict] = None
        self._pending_progress: Optional[dict] = None  # a partial epoch to continue (checkpoint or interrupted fit)
        self._epoch_state: Optional[dict] = None  # the epoch in progress: means, steps, lr, start time
        self._sigint: Optional[SigintGuard] = None
        self._bar: Any = None
        self._prepared = False
        self.nonfinite_inputs: Any = None  # the inputs of the last batch whose loss was not finite (NaN guard)

    # ------------------------------------------------------------------ small helpers
    @property
    def _generators(self) -> dict[str, torch.Generator]:
        return {"data": self.generator}

    def _reference(self) -> Tensor:
        for t in self.model.parameters():
            return t
        return next(self.model.buffers())

    def mode_for(self, key: str) -> str:
        """``"max"`` for metrics (and their ``val_`` twins) whose ``higher_is_better`` is true, else ``"min"``."""
        base = key[4:] if key.startswith("val_") else key
        metric = self.metrics.get(base)
        return "max" if metric is not None and getattr(metric, "higher_is_better", False) else "min"

    def request_stop(self, reason: str, warn: bool = False) -> None:
        """Stop after the current batch's bookkeeping (the first reason given is kept)."""
        if self.stop:
            return
        self.stop, self.stop_reason = True, reason
        self.history.stop_reason = reason
        (log.warning if warn else log.info)("training stopped: %s", reason)
        if self._bar is not None:
            self._bar.write(f"stopping: {reason}", file=sys.stderr)

    def _prepare_objective(self) -> None:
        if self._prepared:
            return
        if self.objective.output not in getattr(self.model, "output_sources", {self.objective.output: None}):
            raise ValidationError(
                f"objective.output: the graph has no Output {self.objective.output!r}; outputs: {list(self.model.output_sources)}"
            )
        if hasattr(self.objective, "prepare"):
            self.objective.prepare(self.model)
        else:
            prepare_regularizers(self.model, getattr(self.objective, "regularizers", ()) or ())
        self._prepared = True

    def _flip(self, layout: Optional[str]) -> bool:
        if layout not in LAYOUTS:
            raise ValidationError(f"layout: expected None, 'time_major' or 'batch_first', got {layout!r}")
        if layout is None:
            return False
        return (layout == "batch_first") != bool(self.model.batch_first)

    def _source(self, data: Any, batch_size: Optional[int], shuffle: bool, drop_last: bool, name: str,
                shard: bool = True) -> Any:
        sharded = self.distributed is not None and shard  # distributed: this rank's share (see .distributed)
        if batch_size is not None:
            if sharded:
                return self.distributed.source(data, batch_size, shuffle, drop_last, self.generator,
                                               self.model.batch_first, self)
            return Batches(data, batch_size, shuffle=shuffle, drop_last=drop_last, generator=self.generator,
                           batch_first=self.model.batch_first)
        if is_array_dataset(data):
            raise ValidationError(f"{name}: looks like a dataset (arrays of samples); pass batch_size= to batch it")
        if not isinstance(data, Iterable):
            raise ValidationError(f"{name}: expected an iterable of (x, y) batches or a dataset with batch_size=, got {type(data).__name__}")
        if sharded:
            return self.distributed.source(data, None, shuffle, drop_last, self.generator, self.model.batch_first, self)
        return data

    # ------------------------------------------------------------------ batches
    def _convert(self, v: Any, floating: bool) -> Tensor:
        ref = self._reference()
        t = v if isinstance(v, Tensor) else torch.as_tensor(np.asarray(v))
        if floating or t.dtype.is_floating_point or t.dtype == torch.bool:
            return t.to(device=ref.device, dtype=ref.dtype)
        return t.to(device=ref.device, dtype=torch.long)

    def _prepare_batch(self, batch: Any, flip: bool) -> tuple[Any, Tensor, int]:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValidationError(f"batch: expected a pair (inputs, target), got {type(batch).__name__}"
                                  + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
        x, y = batch
        if isinstance(x, Mapping):
            x = {k: self._convert(v, True) for k, v in x.items()}
            first = next(iter(x.values()))
        else:
            x = self._convert(x, True)
            first = x
        y = self._convert(y, False)
        if flip:
            x = {k: v.transpose(0, 1) for k, v in x.items()} if isinstance(x, dict) else x.transpose(0, 1)
            first = first.transpose(0, 1)
            if y.ndim >= 3:
                y = y.transpose(0, 1)
        if first.ndim != 3:
            raise ValidationError(f"batch inputs: expected [T, batch, features] (or [batch, T, features]), got {tuple(first.shape)}")
        n = int(first.shape[0] if self.model.batch_first else first.shape[1])
        return x, y, n

    def _time_major(self, y: Tensor) -> Tensor:
        return y.transpose(0, 1) if self.model.batch_first else y

    def _target_time_major(self, target: Tensor) -> Tensor:
        return target.transpose(0, 1) if self.model.batch_first and target.ndim >= 3 else target

    def _metric_values(self, outputs: Mapping[str, Tensor], target: Tensor) -> dict[str, float]:
        if not self.metrics:
            return {}
        y = self._time_major(outputs[self.objective.output]).detach()
        tgt = self._target_time_major(target)
        return {name: float(fn(y, tgt)) for name, fn in self.metrics.items()}

    # ------------------------------------------------------------------ data passes (resumable)
    @staticmethod
    def _iterate(source: Any, skip: int) -> Iterator:
        if hasattr(source, "iterate"):
            return source.iterate(skip)
        it = iter(source)
        for k in range(skip):
            try:
                next(it)
            except StopIteration:
                raise ValidationError(
                    f"resume: the training data has only {k} batches per pass, but the checkpoint is {skip} batches "
                    f"into a pass; resume with the same data"
                ) from None
        return it

    def _next_batch(self, source: Any) -> Any:
        """The next training batch, or None at the end of a pass (a new pass starts on the next call)."""
        if self._iter is None:
            self._pass_rng = rng_state(self._generators)
            self._iter = self._iterate(source, 0)
            self._batches_in_pass = 0
        try:
            batch = next(self._iter)
        except StopIteration:
            empty = self._batches_in_pass == 0
            self._iter, self._pass_rng, self._batches_in_pass = None, None, 0
            if empty:
                raise ValidationError("train: the training data yielded no batches") from None
            return None
        self._batches_in_pass += 1
        return batch

    def _position(self) -> dict[str, Any]:
        return {"pass_rng": self._pass_rng if self._iter is not None else None,
                "batches_in_pass": self._batches_in_pass if self._iter is not None else 0}

    def _restore_position(self, source: Any) -> None:
        """Continue a pass where a checkpoint (or the previous fit) left it, then restore the current RNG state."""
        position = self._pending_position if self._pending_position is not None else self._position()
        current = self._pending_rng if self._pending_rng is not None else rng_state(self._generators)
        self._iter, self._pass_rng, self._batches_in_pass = None, None, 0
        if position["pass_rng"] is not None:
            set_rng_state(position["pass_rng"], self._generators)
            self._iter = self._iterate(source, position["batches_in_pass"])
            self._pass_rng, self._batches_in_pass = position["pass_rng"], position["batches_in_pass"]
        set_rng_state(current, self._generators)
        self._pending_rng = self._pending_position = None

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train: Any,
        val: Any = None,
        *,
        epochs: Optional[int] = None,
        iterations: Optional[int] = None,
        steps_per_epoch: Optional[int] = None,
        batch_size: Optional[int] = None,
        val_batch_size: Optional[int] = None,
        shuffle: bool = True,
        drop_last: bool = False,
        layout: Optional[str] = None,
        resume_from: Union[str, Path, None] = None,
    ) -> History:
        """Train until ``epochs`` epochs or ``iterations`` batches in total (whichever comes first), or a stop.

        See the module docstring for the data forms, epochs and resume.  Returns :attr:`history`.
        """
        if epochs is None and iterations is None:
            raise ValidationError("fit: give epochs= or iterations= (totals, counted from the start of training)")
        _positive_int(epochs, "fit epochs")
        _positive_int(iterations, "fit iterations")
        _positive_int(steps_per_epoch, "fit steps_per_epoch")
        if resume_from is not None:
            self.resume(resume_from)
        source = self._source(train, batch_size, shuffle, drop_last, "train")
        val_source = None if val is None else self._source(val, val_batch_size or batch_size, False, False, "val")
        flip = self._flip(layout) if batch_size is None else False
        val_flip = self._flip(layout) if (val_batch_size or batch_size) is None else False
        self._prepare_objective()
        self._monitor = self.monitor or ("val_loss" if val is not None else "loss")
        self._mode = self.mode_for(self._monitor) if self.mode == "auto" else self.mode
        self.stop, self.stop_reason, self.history.stop_reason = False, None, None
        self._restore_position(source)
        if self.checkpoint_dir is not None:
            remove_stale_temp_files(self.checkpoint_dir)

        for cb in self.callbacks:
            if hasattr(cb, "on_fit_start"):
                cb.on_fit_start(self)
        self._bar = self._progress_bar(source, epochs, iterations, steps_per_epoch)
        try:
            with SigintGuard(self.handle_sigint) as self._sigint:
                while not self._finished(epochs, iterations):
                    self._run_epoch(source, flip, val_source, val_flip, iterations, steps_per_epoch)
        finally:
            self._sigint = None
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        for cb in self.callbacks:
            if hasattr(cb, "on_fit_end"):
                cb.on_fit_end(self)
        return self.history

    def _finished(self, epochs: Optional[int], iterations: Optional[int]) -> bool:
        return (self.stop or (epochs is not None and self.epoch >= epochs)
                or (iterations is not None and self.iteration >= iterations))

    def _progress_bar(self, source: Any, epochs: Optional[int], iterations: Optional[int],
                      steps_per_epoch: Optional[int]) -> Any:
        if not self.progress or (self.distributed is not None and not self.distributed.is_main):
            return None
        from tqdm.auto import tqdm

        per_epoch = steps_per_epoch
        if per_epoch is None:
            try:
                per_epoch = len(source)
            except TypeError:
                per_epoch = None
        totals = [t for t in (iterations, epochs * per_epoch if epochs is not None and per_epoch else None) if t]
        total = min(totals) if totals else None
        return tqdm(total=total, initial=self.iteration, file=sys.stderr, dynamic_ncols=True, unit="batch",
                    leave=True, desc=f"epoch {self.epoch + 1}")

    def _run_epoch(self, source: Any, flip: bool, val_source: Any, val_flip: bool, iterations: Optional[int],
                   steps_per_epoch: Optional[int]) -> None:
        means, steps, lr, start = self._start_epoch()
        while not self.stop:
            if self._sigint is not None and self._sigint.requested:
                self._interrupted()
            if iterations is not None and self.iteration >= iterations:
                break
            if steps_per_epoch is not None and steps >= steps_per_epoch:
                break
            batch = self._next_batch(source)
            if batch is None:
                if steps_per_epoch is None:
                    break
                continue
            self._train_batch(batch, flip, means, steps)
            steps += 1
            if self.checkpoint_every is not None and self.iteration % self.checkpoint_every == 0:
                self._save_last()
        self._epoch_state = None
        if steps == 0:
            return
        self.epoch += 1
        self._end_epoch(means, lr, time.perf_counter() - start, val_source, val_flip)

    def _start_epoch(self) -> tuple[_Mean, int, float, float]:
        """Running means, steps done, learning rate and ``perf_counter`` start of the epoch now starting or continuing."""
        progress, self._pending_progress = self._pending_progress, None
        means = _Mean()
        if progress is None:
            steps, lr, seconds = 0, self._lr(), 0.0
        else:
            means.sums, means.counts = dict(progress["sums"]), dict(progress["counts"])
            steps, lr, seconds = int(progress["steps"]), float(progress["lr"]), float(progress["seconds"])
        start = time.perf_counter() - seconds
        self._epoch_state = {"means": means, "steps": steps, "lr": lr, "start": start}
        return means, steps, lr, start

    def _epoch_progress(self) -> Optional[dict[str, Any]]:
        """The partial epoch for a checkpoint (None at an epoch boundary)."""
        state = self._epoch_state
        if state is None:
            return self._pending_progress
        sums, counts = getattr(self, "_progress_totals", None) or (state["means"].sums, state["means"].counts)
        return {"sums": dict(sums), "counts": dict(counts), "steps": state["steps"],
                "lr": state["lr"], "seconds": time.perf_counter() - state["start"]}

    def _save_last(self) -> Optional[Path]:
        """Write ``last.pt`` now (mid-epoch too); None without a checkpoint directory."""
        if self.checkpoint_dir is None:
            return None
        return self._write(self.checkpoint_dir / "last.pt")

    def _interrupted(self) -> None:
        """Ctrl-C was pressed during the last batch: save ``last.pt`` and raise :class:`TrainingInterrupted`."""
        path = self._save_last()
        steps = self._epoch_state["steps"] if self._epoch_state is not None else 0
        self._pending_progress, self._epoch_state = self._epoch_progress(), None  # another fit() continues
        where = f"after iteration {self.iteration} ({steps} batch(es) into epoch {self.epoch + 1})"
        if path is None:
            message = (f"training interrupted {where}; no checkpoint was written (the trainer has no checkpoint_dir); "
                       f"the trainer's state is consistent, so calling fit again continues")
        else:
            message = (f"training interrupted {where}; checkpoint saved to {path} "
                       f"(continue with trainer.resume({str(path.parent)!r}) and the same fit call)")
        log.warning("%s", message)
        raise TrainingInterrupted(message, path=path, epoch=self.epoch, iteration=self.iteration)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _train_batch(self, batch: Any, flip: bool, means: _Mean, index: int) -> None:
        x, y, n = self._prepare_batch(batch, flip)
        self.model.train()
        try:
            if self.distributed is not None:
                self.distributed.begin_batch(n)
            model = self.model if self.distributed is None else self.distributed.train_model
            result = self.algorithm.train_step(model, x, y, self.objective, self._step_optimizer)
            loss, outputs = float(result.loss), result.outputs
        except FloatingPointError:
            loss, outputs = float("nan"), None  # the algorithm refused the optimiser step
        self.nonfinite_inputs = None if math.isfinite(loss) else x  # for the NaN guard (StopOnNonFinite)
        self.iteration += 1
        if self.scheduler is not None and self.scheduler_interval == "iteration":
            self.scheduler.step()
        values = {"loss": loss}
        if outputs is not None and math.isfinite(loss):
            values.update(self._metric_values(outputs, y))
        means.add(values, n)
        if self._epoch_state is not None:
            self._epoch_state["steps"] = index + 1  # before the callbacks, which may save a checkpoint
        logs = {"epoch": self.epoch, "iteration": self.iteration, "batch": index, **values}
        if self._bar is not None:
            self._bar.set_description(f"epoch {self.epoch + 1}", refresh=False)
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in means.means().items()}, refresh=False)
            self._bar.update(1)
        for cb in self.callbacks:
            if hasattr(cb, "on_batch_end"):
                cb.on_batch_end(self, logs)
        self._sync_stop()

    def _sync_stop(self) -> None:
        """Distributed: a stop requested on any rank is requested on every rank (after the same batch)."""
        if self.distributed is not None and self.distributed.any_stop(self.stop) and not self.stop:
            self.request_stop("another rank stopped")

    def _global_means(self, means: _Mean) -> dict[str, float]:
        """The means of ``means`` over the samples of every rank (distributed), else its own."""
        if self.distributed is not None:
            means.sums, means.counts = self.distributed.gather_means(means.sums, means.counts)
        return means.means()

    def _end_epoch(self, means: _Mean, lr: float, seconds: float, val_source: Any, val_flip: bool) -> None:
        record: dict[str, Any] = {"epoch": self.epoch, "iteration": self.iteration, **self._global_means(means)}
        if val_source is not None:
            start = time.perf_counter()
            record.update({f"val_{k}": v for k, v in self._evaluate_source(val_source, val_flip).items()})
            seconds += time.perf_counter() - start
        record["lr"] = lr
        record["time"] = seconds
        self.history.append(record)
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(self._monitored(record))
            else:
                self.scheduler.step()
        for cb in self.callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(self, dict(record))
        if self._bar is not None:
            self._bar.write(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()),
                            file=sys.stderr)
        self._sync_stop()
        self._checkpoint(record)

    def _monitored(self, record: Mapping[str, Any]) -> float:
        if self._monitor not in record:
            raise ValidationError(f"Trainer monitor: {self._monitor!r} is not in the epoch's record; keys: {sorted(record)}")
        return float(record[self._monitor])

    def _checkpoint(self, record: Mapping[str, Any]) -> None:
        """Track the best ``monitor`` value; write ``best.pt`` (on improvement) and ``last.pt``."""
        if self.checkpoint_dir is None and self._monitor not in record:
            return  # nothing to write, and the monitor may legitimately be absent (no validation data)
        value = self._monitored(record)
        improved = math.isfinite(value) and (
            self.best is None or (value < self.best if self._mode == "min" else value > self.best))
        if improved:
            self.best = value
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._write(*([self.checkpoint_dir / "best.pt"] if improved else []), self.checkpoint_dir / "last.pt")

    # ------------------------------------------------------------------ evaluation
    def _evaluate_source(self, source: Any, flip: bool) -> dict[str, float]:
        means = _Mean()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for batch in self._iterate(source, 0):
                    x, y, n = self._prepare_batch(batch, flip)
                    result = self.model(x)
                    loss = float(total_loss(self.model, result, y, self.objective))
                    means.add({"loss": loss, **self._metric_values(result.outputs, y)}, n)
        finally:
            self.model.train(was_training)
        values = self._global_means(means)
        if not means.sums:
            raise ValidationError("evaluation data yielded no batches")
        return values

    def evaluate(self, data: Any, *, batch_size: Optional[int] = None, layout: Optional[str] = None) -> dict[str, float]:
        """Loss (with regularisers, as in training) and metrics on ``data``, under ``torch.no_grad``.

        Means over batches weighted by batch size; the data forms are those of :meth:`fit`.
        """
        self._prepare_objective()
        source = self._source(data, batch_size, False, False, "data")
        return self._evaluate_source(source, self._flip(layout) if batch_size is None else False)

    def predict(self, data: Any, *, batch_size: Optional[int] = None, layout: Optional[str] = None) -> tuple[Tensor, Tensor]:
        """The objective's Output on ``data`` (time-major ``[T, N, n]``) and the targets, concatenated over batches."""
        source = self._source(data, batch_size, False, False, "data", shard=False)
        flip = self._flip(layout) if batch_size is None else False
        ys, targets = [], []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for batch in self._iterate(source, 0):
                    x, y, _ = self._prepare_batch(batch, flip)
                    ys.append(self._time_major(self.model(x).outputs[self.objective.output]))
                    targets.append(self._target_time_major(y))
        finally:
            self.model.train(was_training)
        if not ys:
            raise ValidationError("predict: the data yielded no batches")
        return torch.cat(ys, dim=1), torch.cat(targets, dim=1 if targets[0].ndim >= 3 else 0)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a bit-identical resume needs (see :mod:`.checkpoint`)."""
        callbacks = [{"class": type(cb).__qualname__, "state": cb.state_dict()}
                     for cb in self.callbacks if hasattr(cb, "state_dict")]
        algorithm = self.algorithm.state_dict() if hasattr(self.algorithm, "state_dict") else None
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "counters": {"epoch": self.epoch, "iteration": self.iteration},
            "position": self._position(),
            "epoch_progress": self._epoch_progress(),
            "rng": rng_state(self._generators),
            "history": self.history.to_dict(),
            "callbacks": callbacks,
            "algorithm": algorithm,
            "best": {"value": self.best, "monitor": getattr(self, "_monitor", self.monitor)},
            "seed": self.seed,
            **({"rank_rng": self._rank_rng} if getattr(self, "_rank_rng", None) is not None else {}),
        }

    def save(self, path: Union[str, Path]) -> Path:
        """Write a checkpoint of the trainer's current state to ``path`` (atomically; distributed: rank 0, all ranks call)."""
        return self._write(Path(path))

    def _write(self, *paths: Path) -> Path:
        """Save the state to each of ``paths``; distributed: rank 0 writes, then a barrier (every rank calls this).

        Distributed, the checkpoint also holds every rank's random states (``rank_rng``; each rank resumes
        its own) and, mid-epoch, the partial epoch's sums and counts of all ranks (rank 0 continues them
        after a resume, the other ranks start from zero).
        """
        if self.distributed is not None:
            self._rank_rng = self.distributed.gather(rng_state(self._generators))
            if self._epoch_state is not None:
                means = self._epoch_state["means"]
                self._progress_totals = self.distributed.gather_means(means.sums, means.counts)
        try:
            if self.distributed is None or self.distributed.is_main:
                state = self.state_dict()
                for path in paths:
                    save_checkpoint(path, state)
        finally:
            self._progress_totals = self._rank_rng = None
        if self.distributed is not None:
            self.distributed.barrier()
        return paths[-1]

    def resume(self, path: Union[str, Path], weights_only: bool = True) -> "Trainer":
        """Load a checkpoint; the next :meth:`fit` continues exactly where it was written.

        ``path`` is a checkpoint file or a checkpoint directory: then the newest
        readable ``*.pt`` in it (:func:`.checkpoint.latest_checkpoint`; corrupt
        files are skipped with a warning), after deleting the temporary files
        of writes that a kill interrupted.
        """
        path = Path(path)
        if path.is_dir():
            remove_stale_temp_files(path)
            path, ckpt = latest_checkpoint(path, map_location="cpu", weights_only=weights_only)
            log.info("resuming from %s", path)
        else:
            ckpt = load_checkpoint(path, map_location="cpu", weights_only=weights_only)
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise ValidationError(f"resume {path}: the checkpoint's model does not match this model: {exc}") from exc
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if (ckpt["scheduler"] is None) != (self.scheduler is None):
            raise ValidationError(
                f"resume {path}: the checkpoint {'has no' if ckpt['scheduler'] is None else 'has a'} scheduler state "
                f"but this trainer {'has a' if self.scheduler is not None else 'has no'} scheduler"
            )
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        with_state = [cb for cb in self.callbacks if hasattr(cb, "state_dict")]
        saved = ckpt["callbacks"]
        if [type(cb).__qualname__ for cb in with_state] != [s["class"] for s in saved]:
            raise ValidationError(
                f"resume {path}: the checkpoint has states for callbacks {[s['class'] for s in saved]}, this trainer's "
                f"stateful callbacks are {[type(cb).__qualname__ for cb in with_state]}"
            )
        for cb, s in zip(with_state, saved):
            cb.load_state_dict(s["state"])
        if ckpt["algorithm"] is not None:
            if not hasattr(self.algorithm, "load_state_dict"):
                raise ValidationError(f"resume {path}: the checkpoint has an algorithm state but {self.algorithm!r} cannot load one")
            self.algorithm.load_state_dict(ckpt["algorithm"])
        self.epoch = int(ckpt["counters"]["epoch"])
        self.iteration = int(ckpt["counters"]["iteration"])
        self.history = History.from_dict(ckpt["history"])
        self.best = ckpt["best"]["value"]
        self._pending_rng = ckpt["rng"]
        self._pending_position = ckpt["position"]
        self._pending_progress, self._epoch_state = ckpt.get("epoch_progress"), None
        if self.distributed is not None:
            if self._pending_progress is not None and not self.distributed.is_main:
                self._pending_progress = {**self._pending_progress, "sums": {}, "counts": {}}  # rank 0 holds the totals
            ranks = ckpt.get("rank_rng")
            if ranks is not None and len(ranks) == self.distributed.world_size:
                self._pending_rng = ranks[self.distributed.rank]  # this rank's own random states
            elif self.distributed.rank != 0:
                log.warning("resume %s: no random states for rank %d (written by %s ranks); using rank 0's",
                            path, self.distributed.rank, len(ranks) if ranks is not None else "non-distributed")
        return self
