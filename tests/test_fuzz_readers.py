"""Fuzzing every file reader: malformed input gives a clear NtgraphError, nothing else.

Each campaign starts from a REAL file written by ntgraph (a ``.ntg`` graph, a
``.nir`` export, a trainer checkpoint ``.pt``, a ``.npy`` input array) and feeds
the reader byte-level mutations of it, chosen by hypothesis: bit flips,
truncation, overwrites and insertions of random bytes, splices of another real
file, and wholly random bytes.  For ``.ntg`` a structured campaign also
replaces parts of ``manifest.json`` with random JSON.

Every input must either load (a mutation can leave a file valid) or raise an
:class:`~ntgraph.errors.NtgraphError` with a non-empty message; any other
exception fails the test, and so does a reader still busy after
``TIME_LIMIT_S`` seconds (SIGALRM guard).  Memory blow-ups are prevented by
the readers' caps on declared sizes, which a dedicated test per reader checks.

``NTGRAPH_FUZZ_EXAMPLES`` sets the examples per campaign (default 100); the
long campaign is ``NTGRAPH_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/test_fuzz_readers.py -m fuzz -s``.
The number of inputs each campaign tried is printed by the last test (``-s``).
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import os
import pathlib
import shutil
import signal
import struct
import tempfile
import zipfile
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ntgraph as ntg
from ntgraph import io as ntg_io
from ntgraph.cli import main as cli_main
from ntgraph.errors import FileFormatError, NtgraphError

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("NTGRAPH_FUZZ_EXAMPLES", "100"))
LONG = EXAMPLES > 100
TIME_LIMIT_S = 20
#: Inputs tried per campaign (printed by test_report_counts).
COUNTS: dict[str, int] = {}

SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not LONG,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
campaign = pytest.mark.slow if LONG else (lambda f: f)


# ----------------------------------------------------------------------------- real files
@functools.lru_cache(maxsize=None)
def _workdir() -> pathlib.Path:
    path = pathlib.Path(tempfile.mkdtemp(prefix="ntgraph-fuzz-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _graph() -> ntg.Graph:
    g = ntg.Graph("fuzz", seed=3)
    g.input("x", 4)
    g.population("h", ntg.LIF(tau_mem=8e-3, v_th=0.5), 5, excitatory=0.8)
    g.dense("x", "h", scale=1.0)
    g.dense("h", "h", scale=0.3, delay=2)
    g.population("o", ntg.LI(tau_mem=8e-3), 2)
    g.dense("h", "o", bias=np.zeros(2))
    g.output("y", "o")
    return g


@functools.lru_cache(maxsize=None)
def real_file(kind: str) -> bytes:
    """The bytes of a real file of ``kind`` (ntg, nir, pt, npy) written by ntgraph's own writers."""
    path = _workdir() / f"real.{kind}"
    if kind == "ntg":
        ntg_io.save(_graph(), path)
    elif kind == "nir":
        from backends.nirio import to_nir

        to_nir(_graph(), path, dt=1e-3)
    elif kind == "pt":
        from backends.torchsim.learning import MSE, Trainer

        model = ntg.compile(_graph(), "torch", dt=1e-3)
        trainer = Trainer(model, MSE(), progress=False)
        rng = np.random.default_rng(0)
        trainer.fit((rng.random((4, 6, 4)).astype(np.float32), rng.random((4, 6, 2)).astype(np.float32)),
                    epochs=1, batch_size=2)
        trainer.save(path)
    elif kind == "npy":
        np.save(path, np.random.default_rng(0).random((6, 1, 4)))
    else:  # pragma: no cover
        raise KeyError(kind)
    return path.read_bytes()


# ----------------------------------------------------------------------------- mutations
KINDS = ("ntg", "nir", "pt", "npy")
_op = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("overwrite"), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 64)),
    st.tuples(st.just("splice"), st.sampled_from(KINDS), st.floats(0, 1), st.floats(0, 1), st.integers(1, 512)),
    st.tuples(st.just("int"), st.floats(0, 1, exclude_max=True),
              st.sampled_from([0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1])),
)
mutations = st.lists(_op, min_size=1, max_size=4)


def mutate(data: bytes, ops: list) -> bytes:
    """Apply the mutation ``ops`` (positions as fractions of the current length) to ``data``."""
    buf = bytearray(data)
    for op in ops:
        at = lambda frac: min(int(frac * len(buf)), max(len(buf) - 1, 0))  # noqa: E731
        kind = op[0]
        if kind == "flip" and buf:
            buf[at(op[1])] ^= 1 << op[2]
        elif kind == "truncate":
            del buf[at(op[1]):]
        elif kind == "overwrite" and buf:
            i = at(op[1])
            buf[i:i + len(op[2])] = op[2]
        elif kind == "insert":
            i = int(op[1] * len(buf))
            buf[i:i] = op[2]
        elif kind == "delete" and buf:
            i = at(op[1])
            del buf[i:i + op[2]]
        elif kind == "splice":
            donor = real_file(op[1])
            j = int(op[3] * len(donor))
            i = int(op[2] * len(buf))
            buf[i:i + op[4]] = donor[j:j + op[4]]
        elif kind == "int" and len(buf) >= 8:
            i = min(at(op[1]), len(buf) - 8)
            buf[i:i + 8] = struct.pack("<Q", op[2])
    return bytes(buf)


# ----------------------------------------------------------------------------- the check
class _Timeout(BaseException):
    """Raised by the alarm: a reader hangs (BaseException, so no reader can swallow it)."""


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise _Timeout(f"reader still busy after {TIME_LIMIT_S} s")


def check_reader(campaign_name: str, read: Callable[[pathlib.Path], object], data: bytes, suffix: str) -> None:
    """Write ``data`` to a file and read it: success, or an NtgraphError with a message; nothing else."""
    COUNTS[campaign_name] = COUNTS.get(campaign_name, 0) + 1
    path = _workdir() / f"input-{os.getpid()}{suffix}"
    path.write_bytes(data)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    try:
        read(path)
    except NtgraphError as exc:
        assert str(exc).strip(), f"{campaign_name}: {type(exc).__name__} with an empty message"
    except _Timeout as exc:
        pytest.fail(f"{campaign_name}: {exc} (input of {len(data)} bytes)")
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer hunts for
        raise AssertionError(
            f"{campaign_name}: foreign exception {type(exc).__name__}: {exc} (input of {len(data)} bytes)") from exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _read_nir(path: pathlib.Path) -> object:
    import warnings

    from backends.nirio import from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return from_nir(path, dt=1e-3)


def _read_pt(path: pathlib.Path) -> object:
    from backends.torchsim.learning import load_checkpoint

    return load_checkpoint(path)


@functools.lru_cache(maxsize=None)
def _model_path() -> pathlib.Path:
    path = _workdir() / "model.ntg"
    ntg_io.save(_graph(), path)
    return path


def _run_cli(path: pathlib.Path) -> object:
    """``ntgraph run`` on the input: exit status 0, or 2 with an ``error:`` line on stderr."""
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = cli_main(["run", str(_model_path()), "--input", str(path), "--steps", "4", "--dt", "1e-3",
                           "--out", str(_workdir() / f"out-{os.getpid()}.npz")])
    if status == 2:
        assert err.getvalue().startswith("error: ") and len(err.getvalue()) > 10, err.getvalue()
    else:
        assert status == 0, f"exit status {status}: {err.getvalue()}"
    return status


READERS: dict[str, tuple[Callable[[pathlib.Path], object], str]] = {
    "ntg": (ntg_io.load, ".ntg"),
    "nir": (_read_nir, ".nir"),
    "pt": (_read_pt, ".pt"),
    "npy": (_run_cli, ".npy"),
}


# ----------------------------------------------------------------------------- the campaigns
def test_real_files_read_back():
    """The unmutated files load: the campaigns start from valid inputs."""
    for kind, (read, suffix) in READERS.items():
        check_reader(f"{kind}-pristine", read, real_file(kind), suffix)
    assert ntg_io.load(_model_path()) == _graph()


@campaign
@pytest.mark.parametrize("kind", KINDS)
def test_mutated_real_files(kind):
    read, suffix = READERS[kind]

    @SETTINGS
    @given(ops=mutations)
    def run(ops):
        check_reader(f"{kind}-mutated", read, mutate(real_file(kind), ops), suffix)

    run()


@campaign
@pytest.mark.parametrize("kind", KINDS)
def test_random_bytes(kind):
    read, suffix = READERS[kind]
    magic = {"ntg": b"PK\x03\x04", "nir": b"\x89HDF\r\n\x1a\n", "pt": b"PK\x03\x04", "npy": b"\x93NUMPY"}[kind]

    @SETTINGS
    @given(body=st.binary(max_size=2048), with_magic=st.booleans())
    def run(body, with_magic):
        check_reader(f"{kind}-random", read, (magic if with_magic else b"") + body, suffix)

    run()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["__type__", "fields", "__array__", "__scalar__", "__tuple__", "__float__", "__dict__",
                         "id", "payload", "name", "x"]) | st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _rewrite_manifest(data: bytes, change: Callable[[dict], None]) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(src.read("manifest.json"))
    change(manifest)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = json.dumps(manifest).encode() if info.filename == "manifest.json" else src.read(info)
            dst.writestr(info.filename, body)
    return out.getvalue()


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for k, v in enumerate(value):
            yield from _paths(v, prefix + (k,))


@campaign
def test_ntg_manifest_structure():
    """Structured fuzzing of ``.ntg``: a random part of the manifest replaced by random JSON."""
    base = real_file("ntg")
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(base)).read("manifest.json"))
    paths = [p for p in _paths(manifest) if p]

    @SETTINGS
    @given(where=st.sampled_from(paths), value=_json)
    def run(where, value):
        def change(m):
            node = m
            for key in where[:-1]:
                node = node[key]
            node[where[-1]] = value

        check_reader("ntg-manifest", ntg_io.load, _rewrite_manifest(base, change), ".ntg")

    run()


# ----------------------------------------------------------------------------- size caps
def test_npy_declaring_a_huge_array_is_refused_before_allocation(capsys):
    path = _workdir() / "huge.npy"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6, 10**3)})
    path.write_bytes(b"\x93NUMPY\x01\x00" + buf.getvalue()[8:] + b"\0" * 64)
    status = cli_main(["run", str(_model_path()), "--input", str(path), "--dt", "1e-3", "--out", str(_workdir() / "o.npz")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "declares" in err and str(path) in err, err


def test_ntg_member_declaring_a_huge_size_is_refused():
    data = bytearray(real_file("ntg"))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("manifest.json")
    # Patch the declared uncompressed size of manifest.json in the central directory.
    central = data.rfind(b"PK\x01\x02", 0, len(data))
    while central >= 0:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46:central + 46 + name_len] == b"manifest.json":
            struct.pack_into("<I", data, central + 24, ntg_io.MAX_MANIFEST_BYTES + 1)
            break
        central = data.rfind(b"PK\x01\x02", 0, central)
    assert info.file_size < ntg_io.MAX_MANIFEST_BYTES and central >= 0
    path = _workdir() / "huge.ntg"
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="declares .* bytes, more than the limit"):
        ntg_io.load(path)


def test_nir_dataset_declaring_a_huge_size_is_refused(monkeypatch):
    import h5py

    from backends.nirio import importer

    path = _workdir() / "big.nir"
    path.write_bytes(real_file("nir"))
    monkeypatch.setattr(importer, "MAX_DATASET_BYTES", 64)  # any weight matrix of the test graph is larger
    with pytest.raises(FileFormatError, match="declares .* bytes, more than the limit"):
        _read_nir(path)
    with h5py.File(path, "r") as fh:  # the file itself is fine
        assert "node" in fh


def test_report_counts():
    """Print and check the number of inputs each campaign tried (run with -s to see them)."""
    lines = [f"{name:16s} {n:6d}" for name, n in sorted(COUNTS.items())]
    print("\nfuzz campaign inputs tried:\n" + "\n".join(lines))
    for name, n in COUNTS.items():
        if name.endswith(("-mutated", "-random", "-manifest")):
            assert n >= min(EXAMPLES, 50), f"{name}: only {n} inputs tried"


def test_nir_file_that_crashes_libhdf5_gives_an_error_not_a_crash(monkeypatch):
    """Some corrupt HDF5 files make libhdf5 segfault; the importer reads them first in a forked child."""
    import h5py

    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")

    def crash(self, *args, **kwargs):  # what libhdf5 does on some corrupt files (found by the fuzzer)
        os.kill(os.getpid(), signal.SIGSEGV)

    path = _workdir() / "crash.nir"
    path.write_bytes(real_file("nir"))
    monkeypatch.setattr(h5py.Dataset, "__getitem__", crash)  # the forked child inherits the patch
    with pytest.raises(FileFormatError, match=r"crashed the HDF5 library \(signal 11\)"):
        _read_nir(path)


@pytest.mark.slow  # waits out the importer's 10 s limit
def test_nir_file_that_hangs_libhdf5_gives_an_error_not_a_hang():
    """Found by the long campaign: 33 bytes spliced at 2 % of the file send libhdf5 into an endless loop."""
    path = _workdir() / "hang.nir"
    path.write_bytes(mutate(real_file("nir"), [("splice", "nir", 0.01901783640829136, 0.25, 33)]))
    check_reader("nir-hang", _read_nir, path.read_bytes(), ".nir")  # no hang past the 20 s guard
    with pytest.raises(FileFormatError, match="did not finish within 10 s"):
        _read_nir(path)
