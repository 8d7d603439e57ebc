"""ntgraph.compare: agreement across simulators, diagnosis of divergences, report files and the CLI gate."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ntgraph as ntg
from ntgraph.cli import EXIT_BELOW_AGREEMENT, main
from ntgraph.compare import SIMULATORS, SimulatorSpec, compare, register_simulator
from ntgraph.compare.simulators import nir_name
from ntgraph.compiler import CompileOptions
from ntgraph.errors import ShapeError, ValidationError
from ntgraph.registry import get_backend, register_backend

pytest.importorskip("torch", reason="the reference is the torch backend")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # NIR export / peer warnings are part of the report

DT = 1e-3
#: voltage tolerance by the simulator's arithmetic (float32 peers; everything else float64)
VOLTAGE_ATOL = {"float64": 1e-12, "float32": 2e-6}


def network(reset: str = "zero", readout: str = "lif") -> ntg.Graph:
    g = ntg.Graph("compare-net", seed=3)
    g.input("x", 3)
    g.population("h", ntg.LIF(tau_mem=4e-3, v_th=0.5, reset=reset), 6)
    g.dense("x", "h", scale=1.0)
    if readout == "lif":
        g.population("o", ntg.LIF(tau_mem=5e-3, v_th=0.4, reset=reset), 3)
    else:
        g.population("o", ntg.LI(tau_mem=5e-3), 3)
    g.dense("h", "o", scale=1.0)
    g.output("y", "o")
    return g


X = np.random.default_rng(0).random((40, 4, 3)) * 2
LABELS = np.array([0, 1, 2, 0])


# ----------------------------------------------------------------------------- simulated simulators
class ResetLosingTorch:
    """A deliberately broken simulator: the torch backend, but every reset is a reset to zero
    (what a peer that reads NIR does); it declares that limitation like a real peer."""

    name = "reset-losing"
    limitations = ("nir:reset-mode",)
    precision = "float64"

    def lower(self, graph, options):
        raise ValidationError("reset-losing: simulate only")

    def simulate(self, graph, options, inputs, record):
        for pop in graph.populations:
            payload = graph[pop]
            if getattr(payload.model, "reset", None) == "subtract":
                graph = graph.with_payload(pop, payload.replace(model=payload.model.replace(reset="zero")))
        torch_options = CompileOptions(dt=options.dt, discretization=options.discretization, timing=options.timing,
                                       extra={"dtype": "float64"})
        return get_backend("torch").simulate(graph, torch_options, inputs, record)


class Crashing:
    name = "crashing"

    def lower(self, graph, options):
        raise RuntimeError("boom")

    def simulate(self, graph, options, inputs, record):
        raise RuntimeError("boom")


register_backend("test-reset-losing", ResetLosingTorch)
register_backend("test-crashing", Crashing)


@pytest.fixture
def fake_simulators(monkeypatch):
    """Three extra simulator names for this test: broken, crashing and not installed."""
    for spec in (
        SimulatorSpec("broken", "test-reset-losing", "direct", "torch that resets to zero"),
        SimulatorSpec("crashing", "test-crashing", "direct", "a simulator with a bug"),
        SimulatorSpec("absent", "test-not-installed", "direct", "a simulator that is not installed"),
    ):
        monkeypatch.setitem(SIMULATORS, spec.name, spec)


# ----------------------------------------------------------------------------- agreement
def test_zero_reset_euler_network_agrees_exactly_on_every_installed_simulator():
    """torch, brian2, onnx and the peers that import the network faithfully (sync timing: Lava is the slow test)."""
    pytest.importorskip("brian2")
    sims = ["torch", "onnx", "snntorch", "norse", "brian2"]
    report = compare(network("zero"), X, sims, dt=DT, labels=LABELS)
    assert [r.name for r in report.results] == sims
    assert report.reference.metrics["accuracy"] is not None
    assert report.reference.arrays["h.spikes"].sum() > 30 and report.reference.arrays["o.spikes"].sum() > 20
    assert report["brian2"].status == "ok"
    for r in report.results[1:]:
        assert r.status in ("ok", "skipped"), (r.name, r.reason)
        if r.status == "skipped":
            continue
        m = r.metrics
        assert m["agreement"] == 1.0 and m["spike_agreement"] == 1.0, r.name
        assert m["spike_count_correlation"] == 1.0 and m["van_rossum"] == 0.0, r.name
        assert r.divergence is None, (r.name, r.divergence)
        assert m["max_voltage_error"] <= VOLTAGE_ATOL[r.precision], (r.name, m["max_voltage_error"])
        assert m["accuracy"] == report.reference.metrics["accuracy"]
        assert sorted(r.keys_compared) == ["h.spikes", "h.v", "o.spikes", "o.v", "y"]
        assert not [d for d in r.diagnoses if d["observed"]], (r.name, r.diagnoses)
    assert report.passes(1.0)


@pytest.mark.slow
def test_pipelined_network_agrees_exactly_on_lava_float_and_lava_fixed_is_explained():
    report = compare(network("zero"), X[:25], ["torch", "onnx", "brian2", "lava-float", "lava-fixed"], dt=DT,
                     timing="pipelined")
    for name in ("onnx", "brian2", "lava-float"):
        r = report[name]
        assert r.status in ("ok", "skipped"), (name, r.reason)
        if r.status == "ok":
            assert r.agreement == 1.0 and r.divergence is None, name
            assert r.metrics["max_voltage_error"] <= 1e-12, name
    fixed = report["lava-fixed"]
    if fixed.status == "skipped":
        return
    assert fixed.status == "ok", fixed.reason
    assert fixed.metrics["weights_quantized"] == 6 * 3 + 3 * 6
    found = {d["id"]: d for d in fixed.diagnoses}
    assert "weights clipped" in found["quantisation"]["text"]
    # graded inputs in [0, 2) rounded to integers (input_scale 1) explain the divergence ...
    assert fixed.agreement < 0.99 and found["input-quantisation"]["observed"]
    assert "'x' is rounded to multiples of 1/1" in found["input-quantisation"]["text"]
    # ... and a finer input scale removes it
    better = compare(network("zero"), X[:25], ["torch", "lava-fixed"], dt=DT, timing="pipelined",
                     backend_options={"lava-fixed": {"quantize": {"input_scale": 4096, "input_range": 2.0}}})
    assert better["lava-fixed"].agreement > fixed.agreement and better["lava-fixed"].agreement >= 0.99
    assert better["lava-fixed"].divergence is None and not [d for d in better["lava-fixed"].diagnoses if d["observed"]]


# ----------------------------------------------------------------------------- divergence and diagnosis
def test_broken_simulator_is_detected_and_explained(fake_simulators):
    g = network("subtract")
    report = compare(g, X, ["torch", "broken"], dt=DT)
    r = report["broken"]
    assert r.status == "ok" and r.agreement < 1.0
    # the first divergence, computed directly: where a zero-reset run first spikes differently
    want = report.reference.arrays
    other = ntg.simulate(g.with_payload("h", g["h"].replace(model=g["h"].model.replace(reset="zero")))
                         .with_payload("o", g["o"].replace(model=g["o"].model.replace(reset="zero"))),
                         X, dt=DT, dtype="float64", record=["h.spikes", "o.spikes"])
    steps = [int(np.argmax((other[k] != want[k]).reshape(len(X), -1).any(axis=1))) for k in ("h.spikes", "o.spikes")
             if (other[k] != want[k]).any()]
    assert r.divergence is not None and r.divergence.step == min(steps)
    assert r.divergence.key.endswith(".spikes")
    observed = [d for d in r.diagnoses if d["observed"]]
    assert [d["id"] for d in observed] == ["reset-mode-lost"]
    assert "reset mode lost in NIR export" in observed[0]["text"] and "'h', 'o'" in observed[0]["text"]
    assert not report.passes(0.99)
    assert "reset mode lost" in str(report)


def test_subtract_reset_through_a_real_peer_is_detected_and_explained():
    report = compare(network("subtract"), X, ["torch", "snntorch", "norse"], dt=DT)
    ran = [r for r in report.compared]
    if not ran:
        pytest.skip("neither snntorch nor norse is installed: " + "; ".join(r.reason for r in report.results[1:]))
    for r in ran:
        assert r.agreement < 1.0 and r.divergence is not None
        ids = [d["id"] for d in r.diagnoses if d["observed"]]
        assert "reset-mode-lost" in ids, (r.name, r.diagnoses)


def test_missing_and_crashing_simulators_are_reported_not_fatal(fake_simulators):
    report = compare(network("zero"), X[:10], ["torch", "absent", "crashing", "broken"], dt=DT)
    assert report["absent"].status == "skipped" and "no such backend" in report["absent"].reason
    assert report["crashing"].status == "failed" and report["crashing"].reason == "RuntimeError: boom"
    assert report["broken"].status == "ok" and report["broken"].agreement == 1.0  # zero reset: nothing to lose
    assert report.passes(0.99)
    lonely = compare(network("zero"), X[:5], ["torch", "absent"], dt=DT)
    assert lonely.min_agreement() is None and not lonely.passes(0.0)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValidationError, match="unknown; expected one of torch, onnx"):
        compare(network(), X, ["torch", "nest"], dt=DT)
    with pytest.raises(ShapeError, match=r"\[T, batch, 3\]"):
        compare(network(), X[..., :2], ["torch"], dt=DT)
    with pytest.raises(ShapeError, match="one label per sample"):
        compare(network(), X, ["torch"], dt=DT, labels=np.array([0, 1]))
    with pytest.raises(ValidationError, match="dtype"):
        compare(network(), X, ["torch"], dt=DT, dtype="float16")


def test_nir_names_match_the_nir_backend():
    nirio = pytest.importorskip("backends.nirio")
    for node_id in ("h", "x->h", "a/b", "50%", ".", "..", "h.reset_delay"):
        assert nir_name(node_id) == nirio.nir_key(node_id)


# ----------------------------------------------------------------------------- report files
def test_report_files_hold_the_numbers(fake_simulators, tmp_path):
    report = compare(network("subtract"), X, ["torch", "broken", "absent"], dt=DT, labels=LABELS)
    written = report.write(tmp_path / "out", min_agreement=0.99)
    for key in ("md", "html", "json"):
        assert written[key].is_file() and written[key].stat().st_size > 500
    assert sorted(p.name for p in written["plots"]) == ["agreement.png", "raster.png", "voltage.png"]
    for p in written["plots"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave no temporary files
    data = json.loads(written["json"].read_text())
    assert data["settings"]["dt"] == DT and data["settings"]["steps"] == 40 and data["settings"]["batch"] == 4
    assert data["settings"]["van_rossum_tau_s"] == 10e-3
    assert data["gate"] == {"min_agreement": 0.99, "passed": False}
    sims = {s["name"]: s for s in data["simulators"]}
    assert [s["status"] for s in data["simulators"]] == ["reference", "ok", "skipped"]
    broken = report["broken"]
    for key in ("agreement", "spike_count_correlation", "van_rossum", "max_voltage_error", "accuracy"):
        assert sims["broken"]["metrics"][key] == pytest.approx(broken.metrics[key], abs=0), key
    assert sims["broken"]["first_divergence"]["step"] == broken.divergence.step
    assert sims["broken"]["diagnoses"][0]["id"] == "reset-mode-lost"
    assert sims["broken"]["per_step_s"] > 0
    md = written["md"].read_text()
    assert "| simulator | status | precision | agreement |" in md and "![Spike rasters side by side](raster.png)" in md
    assert "| max \\|Δv\\| |" in md  # a pipe inside a cell is escaped
    assert "reset mode lost in NIR export" in md and "FAIL: below --min-agreement 0.99: broken" in md
    page = written["html"].read_text()
    assert page.count('<img alt="') == 3 and page.count('src="data:image/png;base64,') == 3
    assert '<table id="results">' in page and "http" not in page.split("<body>")[1]  # self-contained


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def saved(tmp_path):
    ntg.save(network("subtract"), tmp_path / "net.ntg")
    np.save(tmp_path / "x.npy", X[:20])
    np.save(tmp_path / "y.npy", LABELS)
    return tmp_path


def test_cli_gate_exit_codes(fake_simulators, saved, capsys):
    base = ["compare", str(saved / "net.ntg"), "--input", str(saved / "x.npy"), "--labels", str(saved / "y.npy"),
            "--dt", "1e-3"]
    assert main(base + ["--simulators", "torch,absent", "--report", str(saved / "ok")]) == 0
    out = capsys.readouterr().out
    assert "absent: skipped" in out and (saved / "ok" / "report.html").is_file()
    assert main(base + ["--simulators", "torch,broken", "--min-agreement", "0.99"]) == EXIT_BELOW_AGREEMENT
    captured = capsys.readouterr()
    assert "reset mode lost in NIR export" in captured.out and "FAIL: below --min-agreement 0.99" in captured.err
    assert main(base + ["--simulators", "torch,broken", "--min-agreement", "0.5"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(base + ["--simulators", "torch,absent", "--min-agreement", "0.5"]) == EXIT_BELOW_AGREEMENT
    assert "no simulator besides the reference ran" in capsys.readouterr().err
    assert main(base + ["--simulators", "torch,nest"]) == 2
    assert "unknown; expected one of" in capsys.readouterr().err


def test_register_simulator_adds_a_name():
    with pytest.raises(ValidationError, match="SimulatorSpec"):
        register_simulator("torch")
    with pytest.raises(ValidationError, match="route"):
        register_simulator(SimulatorSpec("ftp-torch", "torch", "ftp", "a route that does not exist"))
    register_simulator(SimulatorSpec("torch-copy", "torch", "direct", "the torch backend once more", dtype_option="dtype"))
    try:
        report = compare(network("subtract"), X[:10], ["torch", "torch-copy"], dt=DT)
        assert report["torch-copy"].agreement == 1.0 and report["torch-copy"].metrics["max_voltage_error"] == 0.0
    finally:
        SIMULATORS.pop("torch-copy")
    assert "torch-copy" not in SIMULATORS


def test_diagnosis_table_is_consistent():
    """Every rule has a finder and a unique id; every limitation a simulator declares has a rule that reads it."""
    from ntgraph.compare.diagnose import FINDERS, RULES
    from ntgraph.errors import BackendNotFoundError

    assert all(r.finder in FINDERS for r in RULES) and len({r.id for r in RULES}) == len(RULES)
    declared = {t for spec in SIMULATORS.values() for t in spec.limitations}
    for spec in SIMULATORS.values():
        try:
            declared |= set(getattr(get_backend(spec.backend), "limitations", ()))
        except BackendNotFoundError:
            pass
    assert declared <= {r.tag for r in RULES}, declared - {r.tag for r in RULES}
