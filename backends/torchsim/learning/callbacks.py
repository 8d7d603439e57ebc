"""Trainer callbacks: hooks into the training loop, and the built-in stopping rules.

A callback is any object with some of these methods (the others are skipped)::

    on_fit_start(trainer)
    on_batch_end(trainer, logs)   # logs: epoch, iteration, batch, loss, batch metrics
    on_epoch_end(trainer, logs)   # logs: the epoch's record (see History)
    on_fit_end(trainer)

To stop training, call ``trainer.request_stop(reason)`` (it sets
``trainer.stop = True`` and ``trainer.stop_reason``); the trainer finishes the
current epoch's record, validation and checkpoints, then returns.  A callback
with state (counters, best value) implements ``state_dict()`` /
``load_state_dict(d)``; the trainer saves it in checkpoints so a resumed run
stops exactly where an uninterrupted one would.

Built-in stopping rules:

* :class:`StopOnNonFinite`: a NaN/inf training or validation loss (the trainer
  always installs one);
* :class:`EarlyStopping`: stagnation of a monitored value (``patience``, ``min_delta``);
* :class:`StopAtThreshold`: a monitored value reaches a threshold;
* :class:`TimeLimit`: wall-clock budget (an injectable clock for tests).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Optional

from ntgraph.errors import ValidationError

__all__ = ["Callback", "StopOnNonFinite", "EarlyStopping", "StopAtThreshold", "TimeLimit", "LambdaCallback"]


class Callback:
    """Base class with no-op hooks (subclassing it is optional)."""

    def on_fit_start(self, trainer: Any) -> None:
        pass

    def on_batch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        pass

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        pass

    def on_fit_end(self, trainer: Any) -> None:
        pass


def _monitored(logs: dict[str, Any], monitor: str, who: str) -> float:
    if monitor not in logs:
        raise ValidationError(
            f"{who}.monitor: {monitor!r} is not in the epoch's logs; available: {sorted(logs)} "
            f"(validation values need fit(..., val=...))"
        )
    return float(logs[monitor])


def _check_mode(mode: str, who: str) -> str:
    if mode not in ("min", "max", "auto"):
        raise ValidationError(f"{who}.mode: expected 'min', 'max' or 'auto', got {mode!r}")
    return mode


class StopOnNonFinite(Callback):
    """Stop as soon as a batch's training loss or an epoch's validation loss is NaN or infinite.

    The torch algorithms refuse the optimiser step on a non-finite loss
    (they raise ``FloatingPointError``, which the trainer records as this
    batch's loss), so the model keeps its last finite parameters.
    """

    #: Where the NaN guard found the first non-finite value at the last stop
    #: (a :class:`~backends.torchsim.learning.nan_guard.NonFiniteSite`), or None.
    site: Any = None

    def on_batch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            from .nan_guard import find_nonfinite

            self.site = find_nonfinite(trainer.model, getattr(trainer, "nonfinite_inputs", None))
            where = (f"first non-finite value: {self.site.describe()}" if self.site is not None else
                     "inputs, parameters, gradients and population states are all finite: the loss itself overflowed")
            trainer.request_stop(
                f"training loss is {loss} at epoch {logs['epoch'] + 1}, iteration {logs['iteration']}; {where} "
                f"(the optimiser step was skipped where the algorithm checks; lower the learning rate, "
                f"clip gradients with grad_clip=, or check the inputs)",
                warn=True,
            )

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        loss = logs.get("val_loss")
        if loss is not None and not math.isfinite(loss):
            trainer.request_stop(f"validation loss is {loss} after epoch {logs['epoch']}", warn=True)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``mode="min"`` (improvement: ``value < best - min_delta``), ``"max"``
    (``value > best + min_delta``) or ``"auto"`` (the trainer's direction for the
    key: ``max`` for metrics with ``higher_is_better``, else ``min``).
    ``restore_best=True`` loads the best epoch's parameters back into the model
    when training ends.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0, mode: str = "auto",
                 restore_best: bool = False) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValidationError(f"EarlyStopping.patience: expected a positive number of epochs, got {patience!r}")
        if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
            raise ValidationError(f"EarlyStopping.min_delta: expected a number >= 0, got {min_delta!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.mode = _check_mode(mode, "EarlyStopping")
        self.restore_best = bool(restore_best)
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.wait = 0
        self._best_state: Optional[dict] = None

    def on_fit_start(self, trainer: Any) -> None:
        if self.mode == "auto":
            self.mode = trainer.mode_for(self.monitor)

    def _improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, int(logs["epoch"]), 0
            if self.restore_best:
                self._best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.request_stop(
                f"{self.monitor} did not improve by more than {self.min_delta} for {self.patience} epoch(s) "
                f"(best {self.best} at epoch {self.best_epoch})"
            )

    def on_fit_end(self, trainer: Any) -> None:
        if self.restore_best and self._best_state is not None:
            trainer.model.load_state_dict(self._best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "mode": self.mode,
                "best_state": copy.copy(self._best_state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.mode = state["mode"]
        self._best_state = state["best_state"]


class StopAtThreshold(Callback):
    """Stop once ``monitor`` reaches ``threshold``: ``>=`` for ``mode="max"``, ``<=`` for ``"min"`` (``"auto"``: the key's direction).

    E.g. ``StopAtThreshold("val_accuracy", 0.95)`` or ``StopAtThreshold("loss", 1e-3, mode="min")``.
    """

    def __init__(self, monitor: str, threshold: float, mode: str = "auto") -> None:
        if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValidationError(f"StopAtThreshold.threshold: expected a finite number, got {threshold!r}")
        self.monitor = monitor
        self.threshold = float(threshold)
        self.mode = _check_mode(mode, "StopAtThreshold")

    def on_fit_start(self, trainer: Any) -> None:
        if self.mode == "auto":
            self.mode = trainer.mode_for(self.monitor)

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        value = _monitored(logs, self.monitor, "StopAtThreshold")
        reached = value >= self.threshold if self.mode == "max" else value <= self.threshold
        if reached:
            sign = ">=" if self.mode == "max" else "<="
            trainer.request_stop(f"{self.monitor} = {value:.6g} {sign} {self.threshold:g} after epoch {logs['epoch']}")


class TimeLimit(Callback):
    """Stop once ``seconds`` of wall-clock time have passed since ``fit`` started (checked after every batch).

    ``clock`` (default :func:`time.monotonic`) returns seconds; tests inject a
    fake one.  The budget counts from each ``fit`` call (a resumed run gets a
    fresh budget).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValidationError(f"TimeLimit.seconds: expected a positive duration in seconds, got {seconds!r}")
        self.seconds = float(seconds)
        self.clock = clock
        self.start: Optional[float] = None

    def on_fit_start(self, trainer: Any) -> None:
        self.start = self.clock()

    def _check(self, trainer: Any, where: str) -> None:
        if self.start is None or trainer.stop:
            return
        elapsed = self.clock() - self.start
        if elapsed >= self.seconds:
            trainer.request_stop(f"time limit of {self.seconds:g} s reached ({elapsed:.3g} s elapsed, {where})")

    def on_batch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        self._check(trainer, f"epoch {logs['epoch'] + 1}, iteration {logs['iteration']}")

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        self._check(trainer, f"after epoch {logs['epoch']}")


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda trainer, logs: print(logs))``."""

    def __init__(self, on_fit_start: Optional[Callable] = None, on_batch_end: Optional[Callable] = None,
                 on_epoch_end: Optional[Callable] = None, on_fit_end: Optional[Callable] = None) -> None:
        self._hooks = {"on_fit_start": on_fit_start, "on_batch_end": on_batch_end,
                       "on_epoch_end": on_epoch_end, "on_fit_end": on_fit_end}

    def on_fit_start(self, trainer: Any) -> None:
        if self._hooks["on_fit_start"]:
            self._hooks["on_fit_start"](trainer)

    def on_batch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        if self._hooks["on_batch_end"]:
            self._hooks["on_batch_end"](trainer, logs)

    def on_epoch_end(self, trainer: Any, logs: dict[str, Any]) -> None:
        if self._hooks["on_epoch_end"]:
            self._hooks["on_epoch_end"](trainer, logs)

    def on_fit_end(self, trainer: Any) -> None:
        if self._hooks["on_fit_end"]:
            self._hooks["on_fit_end"](trainer)
