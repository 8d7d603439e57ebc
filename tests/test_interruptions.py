"""Interruptions lose at most the last checkpoint interval: SIGKILL mid-write, Ctrl-C, resume from a directory.

The killed and interrupted runs are real subprocesses (tests/_interrupt_worker.py)
stopped with real signals; synchronisation is by markers the worker prints, never
by sleeping.  Resumed runs must end with weights bit-identical (``torch.equal``)
to an uninterrupted run with the same seeds.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import ntgraph as ntg
from backends.torchsim.learning import LambdaCallback, latest_checkpoint, load_checkpoint, remove_stale_temp_files
from backends.torchsim.learning.interrupts import SigintGuard

sys.path.insert(0, str(Path(__file__).parent))
import _interrupt_worker as worker  # noqa: E402

WORKER = Path(worker.__file__)
TIMEOUT = 120.0  # generous: the worker imports torch on a loaded 2-core machine
POSIX = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
# In-process signal tests need the main thread (only it gets signals and may install handlers).
MAIN_THREAD = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                 reason="signal handlers can only be installed in the main thread")


class Worker:
    """A worker subprocess whose merged stdout/stderr lines are read by a thread, so waits have timeouts."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WORKER), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=WORKER.parents[1])
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str) -> str:
        """The first line starting with ``prefix`` (fails on timeout or if the worker exits first)."""
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"no {prefix!r} from the worker within {TIMEOUT} s; output so far:\n"
                            + "\n".join(self.seen))
            if line is None:
                pytest.fail(f"the worker exited ({self.proc.wait()}) before printing {prefix!r}:\n"
                            + "\n".join(self.seen))
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def final_weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def assert_bit_identical(reference, resumed) -> None:
    a, b = final_weights(reference), final_weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "iteration", "epoch"):
        assert reference.history[key] == resumed.history[key], key
    assert reference.history["loss"][0] != reference.history["loss"][-1]  # it did train


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Both worker subprocesses, started together so that their start-up (importing torch) overlaps.

    ``kill``: its 4th ``torch.save`` pauses half-way.  Saves: ``last.pt`` at iteration 3 (1), ``best.pt`` and
    ``last.pt`` at the end of epoch 1, iteration 4 (2, 3), ``last.pt`` at iteration 6 (4).
    ``sigint``: blocks inside iteration 5, the first batch of epoch 2 (the periodic checkpoint is at 6).
    """
    dirs = {name: tmp_path_factory.mktemp(name) for name in ("kill", "sigint")}
    runs = {"kill": Worker(str(dirs["kill"] / "ckpt"), str(dirs["kill"] / "out.pt"), "--pause-in-write", "4"),
            "sigint": Worker(str(dirs["sigint"] / "ckpt"), str(dirs["sigint"] / "out.pt"), "--block-at", "5")}
    yield {name: (runs[name], dirs[name] / "ckpt") for name in runs}
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.kill()
        run.proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (3 epochs of 4 batches); tests that use both ask for ``workers`` first, so that
    the reference is computed while the workers start."""
    trainer = worker.train(tmp_path_factory.mktemp("reference"))
    assert trainer.iteration == worker.EPOCHS * 4
    return trainer


def temp_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- SIGKILL in the middle of a write
@POSIX
def test_sigkill_during_a_checkpoint_write_resumes_bit_identically(workers, reference):
    run, ckpt = workers["kill"]  # killed half-way through writing last.pt at iteration 6
    temp = Path(run.wait_for("PAUSED-IN-WRITE ").split(" ", 1)[1])
    assert temp.parent == ckpt and temp.name.startswith(".last.pt.") and temp.name.endswith(".tmp")
    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL

    # What the kill left: a half-written temporary file next to the intact previous checkpoints.
    assert temp_files(ckpt) == [temp] and temp.stat().st_size > 0
    with pytest.raises(ntg.FileFormatError):
        load_checkpoint(temp)
    assert sorted(p.name for p in ckpt.glob("*.pt")) == ["best.pt", "last.pt"]
    assert load_checkpoint(ckpt / "last.pt")["counters"] == {"epoch": 1, "iteration": 4}
    path, _ = latest_checkpoint(ckpt)
    assert path == ckpt / "last.pt"  # the temporary file is never a candidate

    resumed = worker.train(ckpt, resume=True)  # a new trainer, resumed from the directory
    assert temp_files(ckpt) == []  # resume cleaned up the dead write
    assert_bit_identical(reference, resumed)


# ----------------------------------------------------------------------------- Ctrl-C
@POSIX
def test_sigint_saves_at_the_end_of_the_batch_and_resumes_bit_identically(workers, reference):
    run, ckpt = workers["sigint"]
    run.wait_for("BLOCKED 5")
    os.kill(run.proc.pid, signal.SIGINT)
    run.wait_for("ntgraph: interrupt received, saving a checkpoint after the current batch")
    run.proc.stdin.write("\n")
    run.proc.stdin.flush()
    line = run.wait_for("INTERRUPTED ")
    assert run.finish() == 130
    assert Path(line.split(" ", 1)[1]) == ckpt / "last.pt"
    assert any("training interrupted after iteration 5 (1 batch(es) into epoch 2); checkpoint saved to" in s
               for s in run.seen)

    saved = load_checkpoint(ckpt / "last.pt")
    assert saved["counters"] == {"epoch": 1, "iteration": 5}
    assert saved["epoch_progress"]["steps"] == 1 and temp_files(ckpt) == []

    resumed = worker.train(ckpt, resume=True)
    assert_bit_identical(reference, resumed)


def _raise_sigint_at(iteration: int, times: int) -> LambdaCallback:
    def on_batch_end(trainer, logs):
        if logs["iteration"] == iteration:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)  # runs the Python handler before returning

    return LambdaCallback(on_batch_end=on_batch_end)


@POSIX
@MAIN_THREAD
def test_second_sigint_aborts_at_once_and_the_handler_is_restored(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    trainer = worker.build_trainer(tmp_path, callbacks=(_raise_sigint_at(2, times=2),))
    with pytest.raises(KeyboardInterrupt) as info:
        trainer.fit(worker.TRAIN, worker.VAL, **worker.FIT)
    assert not isinstance(info.value, ntg.TrainingInterrupted)  # aborted, nothing saved
    assert list(tmp_path.iterdir()) == []  # no checkpoint (the first periodic one is at iteration 3), no temp file
    assert signal.getsignal(signal.SIGINT) is before


@POSIX
@MAIN_THREAD
def test_sigint_without_checkpoint_dir_keeps_a_consistent_trainer(reference):
    before = signal.getsignal(signal.SIGINT)
    trainer = worker.build_trainer(None, callbacks=(_raise_sigint_at(6, times=1),))
    expected = r"after iteration 6 \(2 batch\(es\) into epoch 2\); no checkpoint"
    with pytest.raises(ntg.TrainingInterrupted, match=expected) as info:
        trainer.fit(worker.TRAIN, worker.VAL, **worker.FIT)
    assert info.value.path is None and info.value.iteration == 6 and info.value.epoch == 1
    assert signal.getsignal(signal.SIGINT) is before
    trainer.fit(worker.TRAIN, worker.VAL, **worker.FIT)  # the same call continues where it stopped
    assert_bit_identical(reference, trainer)


@MAIN_THREAD
def test_sigint_guard_only_in_the_main_thread_and_not_over_an_ignored_signal():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(SigintGuard().__enter__().installed))
    thread.start()
    thread.join()
    assert seen == [False]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with SigintGuard() as guard:
            assert not guard.installed and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    with SigintGuard(enabled=False) as guard:
        assert not guard.installed and signal.getsignal(signal.SIGINT) is previous
    with SigintGuard() as guard:
        assert guard.installed and signal.getsignal(signal.SIGINT) == guard._handler
    assert signal.getsignal(signal.SIGINT) is previous


def test_mid_epoch_checkpoints_resume_bit_identically(tmp_path, reference):
    """The periodic last.pt at iteration 3 (3 of 4 batches into epoch 1) and a save from a batch callback."""
    import shutil

    def on_batch_end(trainer, logs):
        if logs["iteration"] == 3:
            trainer.save(tmp_path / "callback" / "cb.pt")
        if logs["iteration"] == 4:  # last.pt still holds the periodic checkpoint of iteration 3
            shutil.copy(tmp_path / "run" / "last.pt", tmp_path / "periodic" / "last.pt")

    (tmp_path / "callback").mkdir()
    (tmp_path / "periodic").mkdir()
    worker.build_trainer(tmp_path / "run", callbacks=(LambdaCallback(on_batch_end=on_batch_end),)).fit(
        worker.TRAIN, worker.VAL, **worker.FIT)
    for name in ("callback", "periodic"):
        saved = latest_checkpoint(tmp_path / name)[1]
        assert saved["counters"] == {"epoch": 0, "iteration": 3} and saved["epoch_progress"]["steps"] == 3, name
        assert_bit_identical(reference, worker.train(tmp_path / name, resume=True))


# ----------------------------------------------------------------------------- resume from a directory
def test_resume_from_a_directory_skips_corrupt_checkpoints_with_a_warning(tmp_path):
    trainer = worker.build_trainer(None)
    trainer.fit(worker.TRAIN, worker.VAL, epochs=1, batch_size=worker.BATCH)
    trainer.save(tmp_path / "best.pt")
    trainer.fit(worker.TRAIN, worker.VAL, epochs=2, batch_size=worker.BATCH)
    good = trainer.save(tmp_path / "last.pt").read_bytes()
    assert latest_checkpoint(tmp_path)[0] == tmp_path / "last.pt"  # the most iterations wins

    (tmp_path / "last.pt").write_bytes(good[: len(good) // 2])  # e.g. a disk that lied about fsync
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(good[:100])
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    other = worker.build_trainer(None)
    with pytest.warns(RuntimeWarning, match=r"skipping checkpoint .*last\.pt: checkpoint .*last\.pt: not a torch"):
        other.resume(tmp_path)
    assert other.iteration == 4 and other.epoch == 1  # best.pt, written after epoch 1
    assert not (tmp_path / ".last.pt.abc123.tmp").exists() and (tmp_path / "notes.txt").exists()

    (tmp_path / "best.pt").write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning), pytest.raises(ntg.FileFormatError, match=r"no readable \*\.pt checkpoint "
                                                                                r"\(unreadable: best\.pt, last\.pt\)"):
        other.resume(tmp_path)
    with pytest.raises(ntg.FileFormatError, match="no such directory"):
        latest_checkpoint(tmp_path / "missing")


def test_stale_temp_files_only_match_checkpoint_writes(tmp_path):
    names = [".last.pt.x1y2.tmp", ".best.pt.q.tmp", ".graph.ntg.a.tmp", "last.pt", "x.tmp", ".last.pt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".best.pt.q.tmp", ".last.pt.x1y2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".graph.ntg.a.tmp", ".last.pt", "last.pt", "x.tmp"]


def test_checkpoint_every_needs_a_directory_and_a_positive_int(tmp_path):
    model = worker.build_trainer(None).model
    from backends.torchsim.learning import CrossEntropyOverTime, Trainer

    with pytest.raises(ntg.ValidationError, match="checkpoint_every=3: needs checkpoint_dir"):
        Trainer(model, CrossEntropyOverTime(), checkpoint_every=3)
    with pytest.raises(ntg.ValidationError, match="checkpoint_every: expected a positive int, got 0"):
        Trainer(model, CrossEntropyOverTime(), checkpoint_every=0, checkpoint_dir=tmp_path)


# ----------------------------------------------------------------------------- the command line
@POSIX
@MAIN_THREAD
def test_cli_demo_ctrl_c_exits_130_naming_the_checkpoint_and_resumes(tmp_path, monkeypatch, capsys):
    from backends.torchsim.learning import Trainer
    from ntgraph import cli, demo, plotting
    from ntgraph.data import Splits

    monkeypatch.setattr(cli, "_demo_comparison", lambda *args: None)  # the simulators are not under test here
    monkeypatch.setattr(plotting, "spike_raster", lambda path, *args, **kwargs: Path(path))  # nor the figure
    rng = np.random.default_rng(0)  # 64 training samples of 8x8 "digits" instead of 1000+: 2 batches of 32
    x = (rng.random((64, 20, 64)) < 0.1).astype(np.float32)
    y = rng.integers(0, 10, 64)
    monkeypatch.setattr(demo, "digits_task", lambda seed: Splits((x, y), (x[:16], y[:16]), (x[:16], y[:16])))
    train_batch = Trainer._train_batch
    fired = []

    def ctrl_c_after_batch_2(self, *args):
        train_batch(self, *args)
        if self.iteration == 2 and not fired:
            fired.append(True)
            signal.raise_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C

    monkeypatch.setattr(Trainer, "_train_batch", ctrl_c_after_batch_2)
    argv = ["demo", "--out", str(tmp_path), "--steps", "20", "--epochs", "2", "--no-progress"]
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    assert f"interrupted after training iteration 2: checkpoint saved to {checkpoint}; run the same command with " \
           f"--resume to continue" in err
    assert load_checkpoint(checkpoint)["counters"] == {"epoch": 0, "iteration": 2}  # the end of the epoch's 2nd batch
    assert not (tmp_path / "classifier.ntg").exists()

    assert cli.main(argv + ["--resume"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    done = load_checkpoint(checkpoint)
    assert done["counters"] == {"epoch": 2, "iteration": 4}
    assert ntg.load(tmp_path / "classifier.ntg").name == "digits-classifier"


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_write_fsyncs_the_file_then_renames_then_fsyncs_the_directory(tmp_path, monkeypatch):
    import stat

    from ntgraph._atomic import atomic_write

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(("fsync", kind, os.fstat(fd).st_size if kind == "file" else None))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(src).parent == Path(dst).parent, Path(src).name.startswith(".a.pt.")))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic_write(tmp_path / "a.pt") as fh:
        fh.write(b"x" * 1000)  # still buffered: the file must be flushed before its fsync
    assert events == [("fsync", "file", 1000), ("replace", True, True), ("fsync", "dir", None)]
    assert (tmp_path / "a.pt").read_bytes() == b"x" * 1000 and temp_files(tmp_path) == []
