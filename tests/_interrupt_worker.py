"""A tiny training run that tests/test_interruptions.py kills or interrupts (run as a script) or resumes (imported).

::

    python tests/_interrupt_worker.py CKPT_DIR OUT.pt [--pause-in-write N] [--block-at ITERATION] [--resume]

trains a 4 -> 8 recurrent LIF -> 2 LI network for 3 epochs of 4 batches,
writing ``last.pt`` every 3 iterations and at every epoch end (``best.pt`` on
improvement), and saves the final ``state_dict`` to ``OUT.pt``.

Test hooks (this file only; nothing in ntgraph):

* ``--pause-in-write N``: the N-th ``torch.save`` of the process writes half of
  its bytes into the (temporary) file, prints ``PAUSED-IN-WRITE <path>`` and
  sleeps, so the parent can SIGKILL it with a half-written temporary file;
* ``--block-at I``: after iteration I, prints ``BLOCKED <I>`` and waits for a
  line on stdin, so the parent can send SIGINT while a batch is in progress.

On :class:`~ntgraph.errors.TrainingInterrupted` it prints ``INTERRUPTED <path>``
and exits with status 130.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ntgraph as ntg  # noqa: E402
from backends.torchsim.learning import CrossEntropyOverTime, EarlyStopping, LambdaCallback, Trainer  # noqa: E402

T, FEATURES, HIDDEN, CLASSES = 10, 4, 8, 2
EPOCHS, BATCH, CHECKPOINT_EVERY = 3, 4, 3
FIT = dict(epochs=EPOCHS, batch_size=BATCH)


def dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bernoulli spike trains [n, T, F] whose rates depend on the class (0: first half of inputs, 1: second)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    rates = np.where((np.arange(FEATURES) < FEATURES // 2)[None, :] == (y[:, None] == 0), 0.6, 0.1)
    x = (rng.random((n, T, FEATURES)) < rates[:, None, :]).astype(np.float32)
    return x, y


TRAIN, VAL = dataset(16, 0), dataset(8, 1)


def build_trainer(checkpoint_dir: Optional[Path], callbacks: tuple = ()) -> Trainer:
    """The same trainer in every run: same graph seed, same global torch seed, same trainer seed."""
    torch.manual_seed(0)
    g = ntg.Graph("interrupt-test", seed=3)
    g.input("x", FEATURES)
    g.population("h", ntg.LIF(tau_mem=8e-3, v_th=0.5), HIDDEN)
    g.dense("x", "h", scale=1.0)
    g.dense("h", "h", scale=0.3)
    g.population("o", ntg.LI(tau_mem=8e-3), CLASSES)
    g.dense("h", "o")
    g.output("y", "o")
    model = ntg.compile(g, "torch", dt=1e-3)
    return Trainer(model, CrossEntropyOverTime(reduce="mean"),
                   optimizer=lambda params: torch.optim.Adam(params, lr=2e-2),
                   scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8),
                   callbacks=[EarlyStopping("val_loss", patience=10), *callbacks],
                   checkpoint_dir=checkpoint_dir, checkpoint_every=CHECKPOINT_EVERY if checkpoint_dir else None,
                   seed=5, progress=False)


def train(checkpoint_dir: Path, resume: bool = False, callbacks: tuple = ()) -> Trainer:
    """Fit to the end (resuming from the newest checkpoint in ``checkpoint_dir`` if asked); return the trainer."""
    trainer = build_trainer(checkpoint_dir, callbacks)
    if resume:
        trainer.resume(checkpoint_dir)
    trainer.fit(TRAIN, VAL, **FIT)
    return trainer


def _pause_in_nth_save(n: int) -> None:
    """Make the n-th torch.save write half of its bytes, flush them to disk, announce it and sleep."""
    real_save = torch.save
    calls = {"count": 0}

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["count"] += 1
        if calls["count"] != n:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        print(f"PAUSED-IN-WRITE {f.name}", flush=True)
        time.sleep(120)  # the parent kills us here
        f.write(data[len(data) // 2:])

    torch.save = save


def _block_at(iteration: int) -> LambdaCallback:
    def on_batch_end(trainer: Trainer, logs: dict) -> None:
        if logs["iteration"] == iteration:
            print(f"BLOCKED {iteration}", flush=True)
            sys.stdin.readline()

    return LambdaCallback(on_batch_end=on_batch_end)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--pause-in-write", type=int, default=None)
    parser.add_argument("--block-at", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    if args.pause_in_write is not None:
        _pause_in_nth_save(args.pause_in_write)
    callbacks = () if args.block_at is None else (_block_at(args.block_at),)
    try:
        trainer = train(args.checkpoint_dir, resume=args.resume, callbacks=callbacks)
    except ntg.TrainingInterrupted as exc:
        print(f"INTERRUPTED {exc.path}", flush=True)
        return 130
    torch.save(trainer.model.state_dict(), args.out)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
