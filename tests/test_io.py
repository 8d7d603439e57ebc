"""Tests of ntgraph's own file format (ntgraph.io) and of atomic writes (ntgraph._atomic)."""

from __future__ import annotations

import dataclasses
import io as pyio
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from ntgraph import io as ntio
from ntgraph._atomic import atomic_write
from ntgraph.constraints import CONSTRAINT_TYPES
from ntgraph.errors import FileFormatError, UnsupportedNodeError, ValidationError
from ntgraph.graph import Graph
from ntgraph.ir import NODE_TYPES, Node
from ntgraph.models import ALIF, IF, LI, LIF, MODEL_TYPES, CubaLIF, RateUnit, WilsonCowan

ALL_TYPES = {**NODE_TYPES, **MODEL_TYPES, **CONSTRAINT_TYPES}


# ------------------------------------------------------------------ helpers
def full_graph() -> Graph:
    """A graph holding every IR node type, neuron model and constraint."""
    g = Graph("every-class", seed=7)
    x = g.input("x", 6, excitatory=0.5)                       # Input with DalesLaw
    u = g.input("u", 3)                                       # Input without
    lif = g.population("lif", LIF(tau_mem=np.linspace(5e-3, 20e-3, 4), v_th=[1.0, 1.1, 0.9, 1.2]), 4,
                       excitatory=[1, 1, -1, -1])
    lif_s = g.population("lif_sub", LIF(tau_mem=10e-3, reset="subtract"), 5)
    cuba = g.population("cuba", CubaLIF(tau_syn=5e-3, tau_mem=np.array([1e-2, 2e-2, 3e-2, 4e-2, 5e-2])), 5)
    alif = g.population("alif", ALIF(tau_mem=20e-3, tau_adapt=np.full(3, 0.2), beta=0.5), 3)
    if_ = g.population("if", IF(r=1e3, v_reset=-0.1), 2)
    li = g.population("li", LI(tau_mem=10e-3, v_leak=np.array([0.0, 0.5])), 2)
    wc = g.population("wc", WilsonCowan(tau=np.linspace(0.01, 0.05, 4), mu=0.2, r=0.1), 4,
                      learnable=("tau", "mu", "r"))
    r0 = g.population("rate_inst", RateUnit(tau=None), 3)
    r1 = g.population("rate_tanh", RateUnit(tau=0.01, bias=np.arange(3.0), activation="tanh"), 3)

    g.dense(x, lif, bias=np.arange(4.0))                      # Dense with bias, Dale from source
    g.dense(lif, lif, p=0.5, no_self=True, bounds=(-np.inf, 0.5))  # mask via p, no self, infinite bound
    g.dense(u, cuba, sign=np.array([[1, 0, -1]] * 5), bounds=(-2.0, 2.0))  # SignMask
    g.dense(u, li, mask=np.array([[True, False, True], [False, True, True]]), delay=3)  # mask, delay
    g.dense(x, alif, balanced=True)                           # BalancedInit, equal rates
    g.dense(x, if_, balanced=np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0]), name="x->if balanced")
    g.sparse(alif, wc, p=0.6, delay=2)
    g.sparse(u, r0, post_index=[0, 1, 2, 2], pre_index=[2, 1, 0, 0], weight=[0.5, -1.0, 2.0, 0.25],
             bounds=(-1.0, np.inf))
    g.one_to_one(cuba, lif_s, weight=np.linspace(0.5, 1.5, 5))
    g.one_to_one(r0, r1, 2.0, bounds=(0.0, 3.0))
    g.dense(wc, r1, init="uniform", name="wc->rate")
    g.dense(lif_s, cuba, delay=1)                             # a cycle cut by a delay
    g.output("y_lif", lif)
    g.output("y_li", li)
    g.output("y_rate", r1)
    return g


def walk_types(value: Any) -> Iterator[type]:
    """Every dataclass type reachable from ``value`` (payloads, models, constraints)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield type(value)
        for f in dataclasses.fields(value):
            yield from walk_types(getattr(value, f.name))
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from walk_types(v)


def graph_types(g: Graph) -> set[type]:
    return {t for _, payload in g.items() for t in walk_types(payload)}


def rewrite(path: Path, edit_manifest: Callable[[dict], Any] = lambda m: m,
            edit_members: Callable[[dict[str, bytes]], Any] = lambda m: m) -> None:
    """Rewrite an ntgraph file in place, changing its manifest and/or raw members."""
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    manifest = json.loads(members["manifest.json"])
    edit_manifest(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    edit_members(members)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def first_payload(manifest: dict, node_id: str) -> dict:
    return next(n["payload"] for n in manifest["graph"]["nodes"] if n["id"] == node_id)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return ntio.save(full_graph(), tmp_path / "net.ntg")


# ------------------------------------------------------------------ round trips
def test_round_trip_every_class(tmp_path: Path) -> None:
    g = full_graph()
    path = ntio.save(g, tmp_path / "net.ntg")
    assert path == tmp_path / "net.ntg" and path.is_file()
    loaded = ntio.load(path)
    assert loaded == g
    assert loaded.seed == g.seed
    assert list(loaded) == list(g) and loaded.edges() == g.edges()
    for node_id, payload in g.items():
        assert type(loaded[node_id]) is type(payload)
        assert loaded[node_id] == payload, node_id
    assert graph_types(loaded) == graph_types(g)


@pytest.mark.parametrize("name", sorted(ALL_TYPES))
def test_every_registered_class_is_covered(name: str) -> None:
    """A class registered in NODE_TYPES/MODEL_TYPES/CONSTRAINT_TYPES must appear in full_graph()."""
    assert ALL_TYPES[name] in graph_types(full_graph()), f"add a {name} to full_graph() in tests/test_io.py"


def test_round_trip_variants_of_models(saved: Path) -> None:
    loaded = ntio.load(saved)
    assert loaded["lif"].model.reset == "zero" and loaded["lif_sub"].model.reset == "subtract"
    assert loaded["rate_inst"].model.tau is None
    assert loaded["rate_tanh"].model.activation == "tanh"
    assert loaded["wc"].learnable == ("tau", "mu", "r")
    np.testing.assert_array_equal(loaded["cuba"].model.tau_mem, [1e-2, 2e-2, 3e-2, 4e-2, 5e-2])
    assert loaded["x"].dale is not None and loaded["u"].dale is None
    assert loaded["x"].dale.sign.dtype == np.int8
    bounds = [c for c in loaded["lif->lif"].constraints if type(c).__name__ == "WeightBounds"]
    assert bounds[0].low == -np.inf
    assert loaded["u->li"].delay == 3 and loaded["lif_sub->cuba"].delay == 1
    assert loaded["u->rate_inst"].pre_index.dtype == np.int64


def test_round_trip_keeps_order_not_sorted(tmp_path: Path) -> None:
    g = Graph("order")
    g.input("z", 2)
    g.input("a", 2)
    g.population("m", LI(tau_mem=1e-2), 2)
    g.dense("z", "m")
    g.dense("a", "m")
    g.output("out", "m")
    g.dense("m", "m", name="0-rec")
    loaded = ntio.load(ntio.save(g, tmp_path / "g.ntg"))
    assert list(loaded) == ["z", "a", "m", "z->m", "a->m", "out", "0-rec"]
    assert loaded.edges() == g.edges()
    assert loaded.incoming("m") == g.incoming("m")


def test_meta_and_attrs_are_not_saved(tmp_path: Path) -> None:
    g = full_graph()
    g.meta("lif")["shape"] = (4,)
    g.attrs["schedule"] = ["x"]
    loaded = ntio.load(ntio.save(g, tmp_path / "g.ntg"))
    assert loaded == g and loaded.meta("lif") == {} and loaded.attrs == {}


def test_empty_graph_and_str_path(tmp_path: Path) -> None:
    g = Graph("empty", seed=-3)
    path = ntio.save(g, str(tmp_path / "empty"))         # no suffix forced
    assert path == tmp_path / "empty"
    loaded = ntio.load(str(path))
    assert loaded == g and len(loaded) == 0 and loaded.seed == -3


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Blob(Node):
    """A test-only node holding every kind of value the encoding supports."""

    values: Any = None


def test_generic_encoding_of_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(NODE_TYPES, "Blob", Blob)
    shared = np.arange(3, dtype=np.int16)
    values = {
        "scalar0d": np.array(2.5),
        "int8": np.array([-1, 1], dtype=np.int8),
        "bool": np.array([[True, False]]),
        "int64": np.array([2**40, -5], dtype=np.int64),
        "float32": np.array([1.5, np.nan], dtype=np.float32),
        "empty": np.zeros((0, 3)),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "np_scalars": (np.float32(0.5), np.int64(3), np.bool_(True)),
        "floats": [np.inf, -np.inf, -0.0, 1e-300, 0.1, 2.0**-1074],
        "plain": (None, True, False, 0, -7, 2**70, "text ü", ()),
        "nested": {"list": [[1, 2], (3,)], "shared": (shared, shared)},
        "model": LIF(tau_mem=2e-2),
    }
    g = Graph("blob")
    g.add("b", Blob(values=values))
    g.add("nan", Blob(values=(np.nan, -np.inf)))
    loaded = ntio.load(ntio.save(g, tmp_path / "b.ntg"))
    assert loaded["b"] == g["b"]                                # Python float nan != nan, so compare it alone
    assert np.isnan(loaded["nan"].values[0]) and loaded["nan"].values[1] == -np.inf
    got = loaded["b"].values
    assert str(got["floats"][2]) == "-0.0"
    assert got["scalar0d"].shape == () and got["scalar0d"].dtype == np.float64
    assert type(got["np_scalars"][0]) is np.float32 and type(got["np_scalars"][2]) is np.bool_
    assert got["model"].tau_mem.shape == ()
    with zipfile.ZipFile(tmp_path / "b.ntg") as zf:
        manifest = json.loads(zf.read("manifest.json"))       # strict JSON: no NaN/Infinity literals
        assert "Infinity" not in zf.read("manifest.json").decode()
        n_members = len([n for n in zf.namelist() if n.endswith(".npy")])
    assert manifest["format"] == "ntgraph" and manifest["version"] == 1
    shared_refs = first_payload(manifest, "b")["fields"]["values"]["__dict__"]["nested"]["__dict__"]["shared"]
    assert shared_refs["__tuple__"][0] == shared_refs["__tuple__"][1]     # one member for one array object
    assert n_members == 7 + 3 + 1 + 5                                    # arrays, numpy scalars, shared, LIF params


def test_members_are_plain_npy(saved: Path) -> None:
    with zipfile.ZipFile(saved) as zf:
        assert zf.namelist()[0] == "manifest.json"
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in zf.infolist())
        manifest = json.loads(zf.read("manifest.json"))
        ref = first_payload(manifest, "x")["fields"]["constraints"]["__tuple__"][0]["fields"]["sign"]["__array__"]
        sign = np.load(pyio.BytesIO(zf.read(ref)), allow_pickle=False)
    assert sign.dtype == np.int8 and sign.tolist() == [1, 1, 1, -1, -1, -1]


# ------------------------------------------------------------------ saving errors
def test_save_refuses_unregistered_types(tmp_path: Path) -> None:
    g = Graph("g")
    g.add("b", Blob(values=1))                                  # Blob is not registered here
    with pytest.raises(UnsupportedNodeError, match="'b'.*Blob"):
        ntio.save(g, tmp_path / "g.ntg")
    assert not any(tmp_path.iterdir())


def test_save_refuses_unencodable_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(NODE_TYPES, "Blob", Blob)
    for bad in ({1, 2}, np.array([object()]), {1: "x"}):
        g = Graph("g")
        g.add("b", Blob(values=bad))
        with pytest.raises(ValidationError, match="node 'b'.values"):
            ntio.save(g, tmp_path / "g.ntg")
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ reading errors
def assert_bad(path: Path, match: str) -> FileFormatError:
    with pytest.raises(FileFormatError, match=match) as info:
        ntio.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    return info.value


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert_bad(tmp_path / "nope.ntg", "does not exist")
    assert_bad(tmp_path, "is not a file")


def test_truncated_files(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    cut = tmp_path / "cut.ntg"
    for n in sorted({0, 1, 4, 30, 100, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 22, len(data) - 1}):
        cut.write_bytes(data[:n])
        assert_bad(cut, "not an ntgraph file|corrupt")


def test_every_corrupted_byte_is_caught_or_harmless(tmp_path: Path) -> None:
    g = Graph("small")
    g.input("x", 2, excitatory=0.5)
    g.population("h", LIF(tau_mem=1e-2), 2)
    g.dense("x", "h", bias=[0.0, 1.0])
    data = ntio.save(g, tmp_path / "g.ntg").read_bytes()
    bad = tmp_path / "bad.ntg"
    for i in range(0, len(data), 3):
        corrupted = bytearray(data)
        corrupted[i] ^= 0xFF
        bad.write_bytes(bytes(corrupted))
        try:
            loaded = ntio.load(bad)
        except FileFormatError:
            continue
        assert loaded == g, f"byte {i} changed the graph silently"


def test_plain_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.ntg"
    path.write_text("hello, this is not a graph\n")
    assert_bad(path, "not a zip archive")


def test_foreign_zip(tmp_path: Path) -> None:
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    assert_bad(path, "manifest.json.*missing")


def test_foreign_format_name(saved: Path) -> None:
    rewrite(saved, lambda m: m.update(format="nir"))
    assert_bad(saved, "not an ntgraph file.*'nir'")


def test_invalid_json_manifest(saved: Path) -> None:
    rewrite(saved, edit_members=lambda m: m.update({"manifest.json": b"{not json"}))
    assert_bad(saved, "not valid JSON")


def test_newer_version(saved: Path) -> None:
    rewrite(saved, lambda m: m.update(version=99))
    err = assert_bad(saved, "newer")
    assert "version 99" in str(err) and "up to 1" in str(err)


@pytest.mark.parametrize("version", [0, "1", None, 1.0, True])
def test_invalid_version(saved: Path, version: Any) -> None:
    rewrite(saved, lambda m: m.update(version=version))
    assert_bad(saved, "invalid format version")


def test_unknown_type(saved: Path) -> None:
    rewrite(saved, lambda m: first_payload(m, "lif")["fields"]["model"].update({"__type__": "os.system"}))
    assert_bad(saved, "node 'lif'.model: unknown type 'os.system'")


def test_unknown_field(saved: Path) -> None:
    rewrite(saved, lambda m: first_payload(m, "x")["fields"].update(colour="red"))
    assert_bad(saved, "node 'x': Input has no field 'colour'")


def test_malformed_encoded_value(saved: Path) -> None:
    rewrite(saved, lambda m: first_payload(m, "x")["fields"].update(size={"__weird__": 1}))
    assert_bad(saved, "node 'x'.size: unrecognised")


def test_payload_must_be_a_node(saved: Path) -> None:
    def edit(m: dict) -> None:
        m["graph"]["nodes"][0]["payload"] = first_payload(m, "lif")["fields"]["model"]
    rewrite(saved, edit)
    assert_bad(saved, "node 'x': expected a node payload, got LIF")


def test_validation_failure_names_node(saved: Path) -> None:
    rewrite(saved, lambda m: first_payload(m, "lif")["fields"].update(size=0))
    assert_bad(saved, "node 'lif': invalid Population: .*size")


def test_validation_failure_of_shapes(saved: Path) -> None:
    # Point the bias of x->lif at the weight member: wrong shape for a bias.
    def edit(m: dict) -> None:
        fields = first_payload(m, "x->lif")["fields"]
        fields["bias"] = fields["weight"]
    rewrite(saved, edit)
    assert_bad(saved, "node 'x->lif': invalid Dense: Dense.bias: expected shape")


def test_missing_array_member(saved: Path) -> None:
    rewrite(saved, lambda m: first_payload(m, "x->lif")["fields"].update(weight={"__array__": "arrays/999.npy"}))
    assert_bad(saved, "node 'x->lif'.weight: member 'arrays/999.npy' is missing")


def member_of(path: Path, node_id: str, field: str) -> str:
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    return first_payload(manifest, node_id)["fields"][field]["__array__"]


def test_corrupted_npy_member(saved: Path) -> None:
    name = member_of(saved, "x->lif", "weight")
    rewrite(saved, edit_members=lambda m: m.update({name: b"\x93NUMPY garbage" * 10}))
    assert_bad(saved, f"member '{name}' is corrupt")


def test_npy_header_declaring_a_huge_array_is_refused(saved: Path) -> None:
    name = member_of(saved, "x->lif", "weight")
    buf = pyio.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    rewrite(saved, edit_members=lambda m: m.update({name: buf.getvalue() + b"\0" * 64}))
    assert_bad(saved, "declares a float64 array of shape \\(1000000000000,\\)")


def test_pickled_npy_member_is_refused(saved: Path) -> None:
    name = member_of(saved, "x->lif", "weight")
    buf = pyio.BytesIO()
    np.lib.format.write_array(buf, np.array([None, 1], dtype=object), allow_pickle=True)
    rewrite(saved, edit_members=lambda m: m.update({name: buf.getvalue()}))
    assert_bad(saved, "object arrays are not allowed")


def test_size_caps(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ntio, "MAX_MEMBER_BYTES", 64)
    assert_bad(saved, "declares .* bytes, more than the limit of 64")
    monkeypatch.setattr(ntio, "MAX_MANIFEST_BYTES", 100)
    assert_bad(saved, "'manifest.json' declares .* more than the limit of 100")


def test_bad_graph_structure(saved: Path) -> None:
    rewrite(saved, lambda m: m["graph"]["edges"].append(["x", "ghost"]))
    assert_bad(saved, "unknown node 'ghost'")
    rewrite(saved, lambda m: m["graph"]["nodes"].append(m["graph"]["nodes"][0]))
    assert_bad(saved, "node id 'x' appears twice")


# ------------------------------------------------------------------ atomic writes
def fail_after_first_member(monkeypatch: pytest.MonkeyPatch) -> None:
    real = np.lib.format.write_array
    calls = []

    def flaky(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk full (simulated)")
        real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", flaky)


def test_failed_save_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "net.ntg"
    old = Graph("old")
    old.input("x", 2, excitatory=1.0)
    ntio.save(old, path)
    before = path.read_bytes()
    fail_after_first_member(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        ntio.save(full_graph(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.ntg"]
    monkeypatch.undo()
    assert ntio.load(path) == old


def test_failed_save_to_new_path_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_after_first_member(monkeypatch)
    with pytest.raises(OSError):
        ntio.save(full_graph(), tmp_path / "net.ntg")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_keeps_permissions(tmp_path: Path) -> None:
    path = tmp_path / "net.ntg"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    ntio.save(full_graph(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert ntio.load(path) == full_graph()


def test_atomic_write_text_and_failure(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    with atomic_write(path, "w") as fh:
        fh.write("héllo")
    assert path.read_text(encoding="utf-8") == "héllo"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as fh:
            fh.write(b"partial")
            raise KeyboardInterrupt
    assert path.read_text(encoding="utf-8") == "héllo"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(path, "a"):
            pass
