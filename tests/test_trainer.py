"""The trainer: learning, callbacks, early stopping, checkpoints, bit-identical resume, history."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import ntgraph as ntg
from backends.torchsim.learning import (
    BPTT,
    MSE,
    TBPTT,
    CrossEntropyOverTime,
    EarlyStopping,
    FiringRateTarget,
    History,
    LambdaCallback,
    StepResult,
    StopAtThreshold,
    TimeLimit,
    Trainer,
    confusion_matrix,
    load_checkpoint,
)
from backends.torchsim.learning import checkpoint as ckpt_module
from backends.torchsim.learning.eprop import EProp

T, FEATURES, CLASSES = 15, 6, 3
RATES = np.array([[0.7, 0.1, 0.1, 0.7, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.7, 0.1, 0.1, 0.7]])


def build(seed: int = 0) -> ntg.Graph:
    g = ntg.Graph("trainer-test", seed=seed)
    g.input("x", FEATURES)
    g.population("h", ntg.LIF(tau_mem=8e-3, v_th=0.5), 12, excitatory=0.75)
    g.dense("x", "h", scale=1.0)
    g.dense("h", "h", scale=0.3)
    g.population("o", ntg.LI(tau_mem=8e-3), CLASSES)
    g.dense("h", "o", bias=np.zeros(CLASSES))
    g.output("y", "o")
    return g


def compiled(**options):
    return ntg.compile(build(), "torch", dt=1e-3, **options)


def dataset(n: int, seed: int):
    """Poisson spike trains [n, T, F] whose rates depend on the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = (rng.random((n, T, FEATURES)) < RATES[y][:, None, :]).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def data():
    return dataset(24, 0), dataset(12, 1)


def adam(lr=2e-2):
    return lambda params: torch.optim.Adam(params, lr=lr)


# ----------------------------------------------------------------------------- learning
def test_loss_decreases_and_trained_values_reach_the_ir(data):
    train, val = data
    model = compiled()
    trainer = Trainer(model, CrossEntropyOverTime(reduce="mean"), optimizer=adam(), progress=False)
    history = trainer.fit(train, val, epochs=5, batch_size=8)
    assert len(history) == 5 and trainer.epoch == 5 and trainer.iteration == 15
    assert history["loss"][-1] < 0.95 * history["loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert set(history.keys()) >= {"epoch", "iteration", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    graph = model.to_graph()  # a plain nn.Module: trained values go back into a new IR graph
    ntg.validate(graph)
    w = model.projections["x->h"].effective_weight().detach().double().numpy()
    np.testing.assert_allclose(graph["x->h"].weight, w, rtol=0, atol=0)
    assert not np.array_equal(graph["x->h"].weight, build()["x->h"].weight)


def test_evaluate_predict_and_confusion_matrix(data):
    train, val = data
    model = compiled()
    trainer = Trainer(model, CrossEntropyOverTime(reduce="max"), progress=False)
    scores = trainer.evaluate(val, batch_size=5)
    y, labels = trainer.predict(val, batch_size=5)
    assert y.shape == (T, 12, CLASSES) and labels.shape == (12,)
    objective = CrossEntropyOverTime(reduce="max")
    with torch.no_grad():
        full = model(torch.as_tensor(val[0]).transpose(0, 1))["y"]
    torch.testing.assert_close(y, full, atol=0, rtol=0)
    assert scores["loss"] == pytest.approx(float(objective(full, labels)), abs=1e-6)
    cm = confusion_matrix(objective.predict(y), labels, CLASSES)
    assert int(cm.sum()) == 12 and float(cm.trace()) / 12 == pytest.approx(scores["accuracy"], abs=1e-7)


def test_data_forms_give_the_same_batches(data):
    """(X, Y) arrays, a map-style dataset, a list of time-major batches and batch-first DataLoader batches."""
    (x, y), _ = data
    results = {}
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    batches_tm = [(torch.as_tensor(x[perm[i:i + 8]]).transpose(0, 1), torch.as_tensor(y[perm[i:i + 8]]))
                  for i in range(0, 24, 8)]
    batches_bf = [(bx.transpose(0, 1), by) for bx, by in batches_tm]
    ds = torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(y))

    class NumpySamples:  # map-style, numpy samples and numpy scalar labels, read-only views
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            xi = x[i]
            xi.flags.writeable = False
            return xi, y[i]

    for name, kwargs in {
        "arrays": dict(train=(x, y), batch_size=8),
        "map-style": dict(train=ds, batch_size=8),
        "numpy map-style": dict(train=NumpySamples(), batch_size=8),
        "time-major batches": dict(train=batches_tm),
        "batch-first batches": dict(train=batches_bf, layout="batch_first"),
        "dict inputs": dict(train=[({"x": bx}, by) for bx, by in batches_tm]),
    }.items():
        model = compiled()
        trainer = Trainer(model, CrossEntropyOverTime(), optimizer=adam(), progress=False, seed=0)
        trainer.fit(epochs=1, **kwargs)
        results[name] = [p.detach().clone() for p in model.parameters()]
    ref = results.pop("arrays")
    for name, params in results.items():
        assert all(torch.equal(a, b) for a, b in zip(ref, params)), name


def test_batch_first_model_and_per_step_targets():
    rng = np.random.default_rng(0)
    x = rng.random((10, T, FEATURES)).astype(np.float32)
    target = np.sin(np.linspace(0, 3, T))[None, :, None].repeat(10, 0).repeat(CLASSES, 2).astype(np.float32)
    model = compiled(batch_first=True)
    trainer = Trainer(model, MSE(), optimizer=adam(5e-2), progress=False)
    history = trainer.fit((x, target), (x, target), epochs=3, batch_size=5)
    assert history["loss"][-1] < history["loss"][0]
    assert "pvar" in history.keys() and history["val_pvar"][-1] > history["val_pvar"][0]
    y, tgt = trainer.predict((x, target), batch_size=5)
    assert y.shape == tgt.shape == (T, 10, CLASSES)  # time-major whatever the model's layout


def test_regularizers_get_their_records_automatically(data):
    train, _ = data
    model = compiled()
    objective = CrossEntropyOverTime(regularizers=[FiringRateTarget("h", 10.0, weight=5.0)])
    trainer = Trainer(model, objective, progress=False)
    history = trainer.fit(train, epochs=1, batch_size=12)
    assert model.recording == ["h.spikes"]
    assert math.isfinite(history["loss"][0])


def test_progress_bar_goes_to_stderr(data, capsys):
    train, _ = data
    Trainer(compiled(), CrossEntropyOverTime(), progress=True).fit(train, epochs=1, batch_size=12)
    out, err = capsys.readouterr()
    assert out == "" and "loss" in err and "accuracy" in err and "epoch 1" in err
    Trainer(compiled(), CrossEntropyOverTime(), progress=False).fit(train, epochs=1, batch_size=12)
    assert capsys.readouterr() == ("", "")


def test_iterations_limit_and_steps_per_epoch(data):
    train, _ = data
    trainer = Trainer(compiled(), CrossEntropyOverTime(), progress=False)
    history = trainer.fit(train, iterations=5, steps_per_epoch=2, batch_size=8)
    assert history["iteration"] == [2, 4, 5] and trainer.iteration == 5 and history["epoch"] == [1, 2, 3]


def test_grad_clip_bounds_the_update(data):
    train, _ = data
    model = compiled()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer = Trainer(model, CrossEntropyOverTime(), optimizer=lambda p: torch.optim.SGD(p, lr=1.0),
                      grad_clip=1e-3, progress=False)
    trainer.fit(train, iterations=1, batch_size=8)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < float((after - before).norm()) <= 1e-3 * (1 + 1e-6)


def test_scheduler_per_iteration_and_plateau(data):
    train, val = data
    trainer = Trainer(compiled(), CrossEntropyOverTime(), optimizer=adam(1e-2), progress=False,
                      scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
                      scheduler_interval="iteration")
    history = trainer.fit(train, epochs=2, batch_size=8)
    assert history["lr"] == pytest.approx([1e-2, 1e-2 * 0.5 ** 3], rel=1e-12)
    # SGD with a tiny lr: the validation loss stays flat, so the plateau rule (10% relative) cuts the lr after epoch 2
    plateau = Trainer(compiled(), CrossEntropyOverTime(), optimizer=lambda p: torch.optim.SGD(p, lr=1e-3),
                      progress=False, monitor="val_loss",
                      scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=0,
                                                                                      threshold=1e-1))
    history = plateau.fit(train, val, epochs=3, batch_size=8)
    assert history["lr"] == pytest.approx([1e-3, 1e-3, 1e-4], rel=1e-12)


# ----------------------------------------------------------------------------- callbacks and stopping
class Scripted:
    """A fake algorithm that reports scripted losses (no training), to test stopping rules exactly."""

    def __init__(self, losses):
        self.losses = list(losses)
        self.calls = 0

    def train_step(self, model, inputs, target, objective, optimizer):
        loss = self.losses[min(self.calls, len(self.losses) - 1)]
        self.calls += 1
        return StepResult(loss, {})


def scripted_trainer(losses, callbacks=(), **kwargs):
    return Trainer(compiled(), CrossEntropyOverTime(), algorithm=Scripted(losses), metrics={},
                   callbacks=callbacks, progress=False, **kwargs)


def test_callbacks_fire_in_order(data):
    train, val = data
    events = []
    cb = LambdaCallback(on_fit_start=lambda tr: events.append("start"),
                        on_batch_end=lambda tr, logs: events.append(("batch", logs["epoch"], logs["batch"], logs["iteration"])),
                        on_epoch_end=lambda tr, logs: events.append(("epoch", logs["epoch"], sorted(logs))),
                        on_fit_end=lambda tr: events.append("end"))
    trainer = Trainer(compiled(), CrossEntropyOverTime(), callbacks=[cb], progress=False)
    trainer.fit(train, val, epochs=2, batch_size=12)
    keys = ["accuracy", "epoch", "iteration", "loss", "lr", "time", "val_accuracy", "val_loss"]
    assert events == ["start", ("batch", 0, 0, 1), ("batch", 0, 1, 2), ("epoch", 1, keys),
                      ("batch", 1, 0, 3), ("batch", 1, 1, 4), ("epoch", 2, keys), "end"]


def test_stop_on_nan_from_the_algorithm_check(data, caplog):
    """BPTT refuses the step on a non-finite loss; the trainer records NaN and stops with a clear message."""
    train, _ = data

    class NanAfter(CrossEntropyOverTime):
        calls = 0

        def __call__(self, y, target):
            NanAfter.calls += 1
            loss = super().__call__(y, target)
            return loss * float("nan") if NanAfter.calls == 4 else loss

    model = compiled()
    trainer = Trainer(model, NanAfter(), optimizer=adam(), progress=False)
    with caplog.at_level("WARNING", logger="ntgraph.training"):
        history = trainer.fit(train, epochs=5, batch_size=8)
    assert trainer.stop and trainer.iteration == 4 and len(history) == 2
    assert "training loss is nan at epoch 2, iteration 4" in history.stop_reason
    assert "training loss is nan" in caplog.text
    assert math.isnan(history["loss"][-1])
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was never taken


def test_stop_on_inf_from_an_algorithm_that_does_not_check():
    trainer = scripted_trainer([1.0, 0.5, float("inf"), 0.1])
    history = trainer.fit(dataset(24, 0), epochs=5, batch_size=8)
    assert trainer.iteration == 3 and "training loss is inf" in history.stop_reason


def test_early_stopping_on_stagnation():
    # per-epoch losses (3 batches each, equal): 1.0, 0.9, 0.895, 0.894, 0.95 -> no improvement > 0.01 after epoch 2
    losses = [v for v in (1.0, 0.9, 0.895, 0.894, 0.95, 0.5) for _ in range(3)]
    stopper = EarlyStopping(monitor="loss", patience=3, min_delta=0.01)
    trainer = scripted_trainer(losses, callbacks=[stopper])
    history = trainer.fit(dataset(24, 0), epochs=10, batch_size=8)
    assert len(history) == 5 and stopper.best == pytest.approx(0.9) and stopper.best_epoch == 2
    assert "loss did not improve by more than 0.01 for 3 epoch(s) (best 0.9" in history.stop_reason


def test_early_stopping_restores_the_best_weights(data):
    train, val = data
    model = compiled()
    stopper = EarlyStopping(monitor="val_accuracy", patience=1, restore_best=True)
    last = {}
    keep_last = LambdaCallback(on_epoch_end=lambda tr, logs: last.update(
        {k: v.detach().clone() for k, v in tr.model.state_dict().items()}))
    trainer = Trainer(model, CrossEntropyOverTime(), optimizer=adam(2e-1), callbacks=[stopper, keep_last],
                      progress=False)
    assert trainer.mode_for("val_accuracy") == "max" and trainer.mode_for("val_loss") == "min"
    history = trainer.fit(train, val, epochs=6, batch_size=8)
    assert stopper.mode == "max" and stopper.best_epoch < len(history)  # the best epoch is not the last one
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in stopper._best_state.items())
    assert not all(torch.equal(v, state[k]) for k, v in last.items())


def test_stop_at_threshold():
    losses = [v for v in (1.0, 0.7, 0.45, 0.3) for _ in range(3)]
    trainer = scripted_trainer(losses, callbacks=[StopAtThreshold("loss", 0.5, mode="min")])
    history = trainer.fit(dataset(24, 0), epochs=10, batch_size=8)
    assert len(history) == 3 and history.stop_reason == "loss = 0.45 <= 0.5 after epoch 3"
    with pytest.raises(ntg.ValidationError, match="'val_accuracy' is not in the epoch's logs"):
        scripted_trainer([1.0], callbacks=[StopAtThreshold("val_accuracy", 0.9)]).fit(dataset(8, 0), epochs=2, batch_size=8)


def test_time_limit_with_a_fake_clock():
    ticks = iter(range(0, 1000, 4))  # every call to the clock advances 4 s
    limit = TimeLimit(10.0, clock=lambda: float(next(ticks)))
    trainer = scripted_trainer([1.0], callbacks=[limit])
    history = trainer.fit(dataset(24, 0), epochs=10, batch_size=8)
    # start at 0; the checks after batches 1, 2, 3 read 4, 8, 12 s -> stop after the third batch
    assert trainer.iteration == 3 and len(history) == 1
    assert history.stop_reason.startswith("time limit of 10 s reached (12 s elapsed")


# ----------------------------------------------------------------------------- checkpoints
def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_checkpoints_best_and_last_are_written_atomically(data, tmp_path, monkeypatch):
    train, val = data
    trainer = Trainer(compiled(), CrossEntropyOverTime(), optimizer=adam(), checkpoint_dir=tmp_path, progress=False)
    trainer.fit(train, val, epochs=2, batch_size=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["counters"] == {"epoch": 2, "iteration": 6} and len(last["history"]["records"]) == 2
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best"]["value"] == min(trainer.history["val_loss"]) and best["best"]["monitor"] == "val_loss"

    before = (tmp_path / "last.pt").read_bytes()

    def failing_save(obj, fh):
        fh.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save(tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before and no_temp_files(tmp_path)


def test_corrupt_checkpoints_are_rejected(tmp_path):
    trainer = Trainer(compiled(), CrossEntropyOverTime(), progress=False)
    path = trainer.save(tmp_path / "ok.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ntg.FileFormatError, match="cut.pt"):
        trainer.resume(tmp_path / "cut.pt")
    torch.save({"hello": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ntg.FileFormatError, match="not an ntgraph trainer checkpoint"):
        trainer.resume(tmp_path / "foreign.pt")
    with pytest.raises(ntg.FileFormatError, match="no such file"):
        trainer.resume(tmp_path / "missing.pt")
    other = Trainer(compiled(), CrossEntropyOverTime(), progress=False,
                    scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1))
    with pytest.raises(ntg.ValidationError, match="has no scheduler state but this trainer has a scheduler"):
        other.resume(path)


# ----------------------------------------------------------------------------- bit-identical resume
class PoissonRates(torch.utils.data.Dataset):
    """Encodes rates to spikes on the fly with the *global* torch RNG, so resume must restore it."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.y = torch.as_tensor(rng.integers(0, CLASSES, n))
        self.rates = torch.as_tensor(RATES, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        y = self.y[i]
        return (torch.rand(T, FEATURES) < self.rates[y]).float(), y


def make_trainer(algorithm, checkpoint_dir=None):
    torch.manual_seed(0)  # the same global state at the start of both runs
    return Trainer(compiled(), CrossEntropyOverTime(reduce="mean"), optimizer=adam(2e-2), algorithm=algorithm,
                   scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.8),
                   callbacks=[EarlyStopping("val_loss", patience=10)],
                   checkpoint_dir=checkpoint_dir, seed=7, progress=False)


def assert_identical(straight: Trainer, resumed: Trainer) -> None:
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(a, b), name
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "iteration"):
        assert straight.history[key] == resumed.history[key], key
    assert straight.history["loss"][0] != straight.history["loss"][-1]  # it did train
    assert straight.callbacks[1].state_dict()["best"] == resumed.callbacks[1].state_dict()["best"]


@pytest.mark.parametrize("algorithm", [BPTT(), TBPTT(window=6), EProp()], ids=["BPTT", "TBPTT", "EProp"])
def test_resume_is_bit_identical(tmp_path, algorithm):
    train, val = PoissonRates(24, 0), PoissonRates(8, 1)
    fit = dict(batch_size=8)
    straight = make_trainer(algorithm)
    straight.fit(train, val, epochs=4, **fit)

    first = make_trainer(algorithm, tmp_path)
    first.fit(train, val, epochs=2, **fit)
    torch.manual_seed(1234)  # disturb every global state between the runs
    np.random.seed(1234)
    resumed = make_trainer(algorithm)
    resumed.fit(train, val, epochs=4, resume_from=tmp_path / "last.pt", **fit)
    assert len(resumed.history) == 4
    assert_identical(straight, resumed)


def test_resume_mid_pass_with_a_shuffling_dataloader(tmp_path):
    """Epochs of 3 batches over passes of 4: the checkpoint after epoch 1 is 3 batches into the first pass."""
    ds = PoissonRates(32, 0)

    def loader():
        return torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)  # order from the global torch RNG

    fit = dict(steps_per_epoch=3, layout="batch_first")
    straight = make_trainer(BPTT())
    straight.fit(loader(), loader(), epochs=3, **fit)
    first = make_trainer(BPTT(), tmp_path)
    first.fit(loader(), loader(), epochs=1, **fit)
    assert load_checkpoint(tmp_path / "last.pt")["position"]["batches_in_pass"] == 3
    torch.manual_seed(99)
    resumed = make_trainer(BPTT())
    resumed.fit(loader(), loader(), epochs=3, resume_from=tmp_path / "last.pt", **fit)
    assert_identical(straight, resumed)


def test_two_fit_calls_equal_one(data):
    train, val = data
    once = make_trainer(BPTT())
    once.fit(train, val, epochs=3, batch_size=8, steps_per_epoch=2)
    twice = make_trainer(BPTT())
    twice.fit(train, val, epochs=1, batch_size=8, steps_per_epoch=2)
    twice.fit(train, val, epochs=3, batch_size=8, steps_per_epoch=2)
    assert_identical(once, twice)


# ----------------------------------------------------------------------------- history
def test_history_json_round_trip_and_plot(tmp_path):
    history = History([{"epoch": 1, "iteration": 3, "loss": 1.0, "val_loss": float("nan"), "lr": 1e-3, "time": 0.1},
                       {"epoch": 2, "iteration": 6, "loss": 0.5, "val_loss": 0.7, "lr": 5e-4, "time": 0.1}],
                      stop_reason="test")
    text = history.to_json(tmp_path / "history.json")
    back = History.from_json(tmp_path / "history.json")
    assert History.from_json(text).records[1] == back.records[1] == history.records[1]
    assert math.isnan(back["val_loss"][0]) and back.stop_reason == "test"
    assert history.best("val_loss")["epoch"] == 2
    png = history.plot(tmp_path / "history.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert no_temp_files(tmp_path)
    with pytest.raises(ntg.ValidationError, match="unknown"):
        history.plot(tmp_path / "x.png", keys=["nope"])


# ----------------------------------------------------------------------------- errors
def test_fit_argument_errors(data):
    train, _ = data
    trainer = Trainer(compiled(), CrossEntropyOverTime(), progress=False)
    with pytest.raises(ntg.ValidationError, match="give epochs= or iterations="):
        trainer.fit(train)
    with pytest.raises(ntg.ValidationError, match="pass batch_size="):
        trainer.fit(train, epochs=1)
    with pytest.raises(ntg.ValidationError, match="no batches"):
        trainer.fit([], epochs=1)
    with pytest.raises(ntg.ValidationError, match="no Output 'z'"):
        Trainer(compiled(), CrossEntropyOverTime(output="z"), progress=False).fit(train, epochs=1, batch_size=8)
    with pytest.raises(ntg.ValidationError, match="metrics"):
        Trainer(compiled(), CrossEntropyOverTime(), metrics={"loss": lambda y, t: 0.0})
