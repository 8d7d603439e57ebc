"""The training history: one record per epoch, JSON round trip and a PNG plot.

A record is a flat dict of numbers, e.g.::

    {"epoch": 3, "iteration": 120, "loss": 0.41, "accuracy": 0.88,
     "val_loss": 0.47, "val_accuracy": 0.85, "lr": 0.001, "time": 1.9}

``epoch`` counts completed epochs (1 for the first record), ``iteration``
the optimiser steps so far, ``loss`` and the metrics are means over the
epoch's training batches (weighted by batch size), ``val_*`` are computed on
the validation set after the epoch, ``lr`` is the learning rate of the first
parameter group during the epoch and ``time`` the epoch's wall-clock seconds.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from ntgraph._atomic import atomic_write
from ntgraph.errors import FileFormatError, ValidationError

__all__ = ["History"]

FORMAT = "ntgraph.history"
VERSION = 1


def _number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    return float(value)


def _json_number(value: Any) -> Any:
    """JSON has no nan/inf: write them as strings, read back by :func:`_from_json_number`."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'nan', 'inf', '-inf'
    return value


def _from_json_number(value: Any) -> Any:
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


class History:
    """Per-epoch records of a training run (see the module docstring for the keys)."""

    def __init__(self, records: Optional[Sequence[dict]] = None, stop_reason: Optional[str] = None) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in (records or [])]
        self.stop_reason = stop_reason

    # ------------------------------------------------------------------ access
    def append(self, record: dict[str, Any]) -> None:
        self.records.append({k: _number(v) for k, v in record.items()})

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, key: Union[str, int]) -> Any:
        """``history["val_loss"]`` -> the list over epochs (``nan`` where a record lacks it); ``history[-1]`` -> a record."""
        if isinstance(key, int):
            return self.records[key]
        if key not in self.keys():
            raise KeyError(f"history has no key {key!r}; keys: {self.keys()}")
        return [r.get(key, float("nan")) for r in self.records]

    def keys(self) -> list[str]:
        """Every key that appears in a record, in first-seen order."""
        return list(dict.fromkeys(k for r in self.records for k in r))

    def best(self, key: str, mode: str = "min") -> Optional[dict[str, Any]]:
        """The record with the smallest (``mode="min"``) or largest (``"max"``) finite value of ``key``."""
        if mode not in ("min", "max"):
            raise ValidationError(f"History.best mode: expected 'min' or 'max', got {mode!r}")
        candidates = [r for r in self.records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if not candidates:
            return None
        pick = min if mode == "min" else max
        return pick(candidates, key=lambda r: r[key])

    def __repr__(self) -> str:
        last = self.records[-1] if self.records else {}
        return f"History({len(self)} epochs, keys={self.keys()}, last={last}, stop_reason={self.stop_reason!r})"

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "records": [dict(r) for r in self.records],
                "stop_reason": self.stop_reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "History":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FileFormatError(f"history: expected a dict with format {FORMAT!r}, got {str(data)[:80]!r}")
        if data.get("version") != VERSION:
            raise FileFormatError(f"history: unsupported version {data.get('version')!r}; expected {VERSION}")
        return cls(data["records"], data.get("stop_reason"))

    def to_json(self, path: Union[str, os.PathLike, None] = None) -> str:
        """The history as JSON text (nan/inf as strings); written atomically to ``path`` if given."""
        data = self.to_dict()
        data["records"] = [{k: _json_number(v) for k, v in r.items()} for r in data["records"]]
        text = json.dumps(data, indent=1)
        if path is not None:
            with atomic_write(path, "w") as fh:
                fh.write(text)
        return text

    @classmethod
    def from_json(cls, source: Union[str, os.PathLike]) -> "History":
        """Read JSON text or a file written by :meth:`to_json`."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            try:
                text = Path(source).read_text(encoding="utf-8")
            except OSError as exc:
                raise FileFormatError(f"history: cannot read {source!s}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"history: not valid JSON ({exc})") from exc
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            data["records"] = [{k: _from_json_number(v) for k, v in r.items()} for r in data["records"]]
        return cls.from_dict(data)

    # ------------------------------------------------------------------ plot
    def plot(self, path: Union[str, os.PathLike], keys: Optional[Sequence[str]] = None, title: str = "") -> Path:
        """Write a PNG (atomically): one panel per quantity, training and ``val_`` curves together, over epochs.

        ``keys`` picks the quantities (default: every numeric key except
        ``epoch``, ``iteration`` and ``time``); ``lr`` gets a log-scale panel.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.records:
            raise ValidationError("History.plot: the history is empty; nothing to plot")
        all_keys = self.keys()
        if keys is None:
            keys = [k for k in all_keys if k not in ("epoch", "iteration", "time") and not k.startswith("val_")]
            keys += [k[4:] for k in all_keys if k.startswith("val_") and k[4:] not in keys]
        missing = [k for k in keys if k not in all_keys and f"val_{k}" not in all_keys]
        if missing:
            raise ValidationError(f"History.plot keys: unknown {missing}; available: {all_keys}")
        epochs = self["epoch"] if "epoch" in all_keys else list(range(1, len(self) + 1))
        fig, axes = plt.subplots(len(keys), 1, figsize=(6.5, 2.2 * len(keys) + 0.8), sharex=True, squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            for name, style in ((key, "-o"), (f"val_{key}", "--s")):
                if name in all_keys:
                    ax.plot(epochs, self[name], style, ms=3, lw=1.2, label=name)
            if key == "lr":
                ax.set_yscale("log")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
        axes[-1, 0].set_xlabel("epoch")
        if title or self.stop_reason:
            fig.suptitle(title or f"stopped: {self.stop_reason}", fontsize=9)
        fig.tight_layout()
        path = Path(path)
        try:
            with atomic_write(path, "wb") as fh:
                fig.savefig(fh, format="png", dpi=110)
        finally:
            plt.close(fig)
        return path
