"""The ntgraph command line: info, run, demo, and clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ntgraph as ntg
from ntgraph.cli import main


def two_input_graph() -> ntg.Graph:
    g = ntg.Graph("cli", seed=2)
    g.input("a", 3)
    g.input("b", 2)
    g.population("h", ntg.LIF(tau_mem=5e-3), 4)
    g.dense("a", "h", scale=3.0)
    g.dense("b", "h", scale=3.0, delay=2)
    g.population("o", ntg.LI(tau_mem=5e-3), 2)
    g.dense("h", "o")
    g.output("y", "o")
    g.output("s", "h")
    return g


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return ntg.save(two_input_graph(), tmp_path / "net.ntg")


def test_info_prints_graph_summary_and_resources(saved: Path, capsys):
    assert main(["info", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "Graph 'cli' (9 nodes)" in out and "total" in out and "resources: neurons=6" in out


def test_run_writes_every_output_and_probe_matching_the_api(saved: Path, tmp_path: Path, capsys):
    rng = np.random.default_rng(0)
    xa, xb = rng.random((12, 2, 3)), rng.random((12, 2, 2))
    np.save(tmp_path / "a.npy", xa)
    np.save(tmp_path / "b.npy", xb)
    out = tmp_path / "y.npz"
    code = main(["run", str(saved), "--input", f"a={tmp_path / 'a.npy'}", "--input", f"b={tmp_path / 'b.npy'}",
                 "--dt", "1e-3", "--out", str(out), "--record", "h.v"])
    assert code == 0
    with np.load(out) as y:
        assert sorted(y.files) == ["h.v", "s", "y"]
        expected = ntg.simulate(two_input_graph(), {"a": xa, "b": xb}, dt=1e-3, record=["h.v"])
        for k in y.files:
            np.testing.assert_allclose(y[k], expected[k], rtol=0, atol=1e-6)
    assert "simulated 12 steps" in capsys.readouterr().out


def test_run_steps_pads_with_zero_input(tmp_path: Path):
    g = ntg.Graph("pad")
    g.input("x", 1)
    g.population("v", ntg.LI(tau_mem=2e-3), 1)
    g.dense("x", "v", weight=[[1.0]])
    g.output("y", "v")
    path = ntg.save(g, tmp_path / "g.ntg")
    np.save(tmp_path / "x.npy", np.ones((2, 1, 1)))
    assert main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--dt", "1e-3", "--steps", "4",
                 "--out", str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_allclose(y["y"].ravel(), [0.5, 0.75, 0.375, 0.1875], atol=1e-7)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d, g: ["info", str(d / "missing.ntg")], "does not exist"),
        (lambda d, g: ["run", str(g), "--input", str(d / "x.npy"), "--dt", "1e-3", "--out", str(d / "y.npz")],
         "use --input NAME=FILE.npy"),
        (lambda d, g: ["run", str(g), "--input", f"a={d / 'bad.npy'}", "--input", f"b={d / 'x.npy'}", "--dt", "1e-3",
                       "--out", str(d / "y.npz")], "expected shape [T, batch, features]"),
        (lambda d, g: ["run", str(g), "--input", f"a={d / 'x.npy'}", "--input", f"b={d / 'x.npy'}", "--dt", "1e-3",
                       "--out", str(d / "y.npz")], "Input 'b': expected a tensor of shape [T, batch, 2]"),
        (lambda d, g: ["run", str(g), "--input", f"a={d / 'x.npy'}", "--dt", "1e-3", "--out", str(d / "y.npz")],
         "missing arrays for inputs ['b']"),
        (lambda d, g: ["run", str(g), "--input", f"zz={d / 'x.npy'}", "--dt", "1e-3", "--out", str(d / "y.npz")],
         "no Input 'zz'"),
        (lambda d, g: ["run", str(g), "--input", f"a={d / 'x.npy'}", "--input", f"b={d / 'x.npy'}", "--dt", "-1",
                       "--out", str(d / "y.npz")], "dt"),
    ],
)
def test_errors_exit_2_with_a_message_and_write_nothing(saved: Path, tmp_path: Path, capsys, make_args, message):
    np.save(tmp_path / "bad.npy", np.zeros((3, 3)))
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 3)))
    assert main(make_args(tmp_path, saved)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "y.npz").exists()


def test_demo_runs_end_to_end_and_writes_a_raster(tmp_path: Path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "200", "--epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Graph 'balanced-ei-demo'" in out and "excitatory rate" in out and "test accuracy" in out
    assert ntg.load(tmp_path / "classifier.ntg").name == "digits-classifier"
    png = (tmp_path / "raster.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert ntg.load(tmp_path / "demo.ntg") == __import__("ntgraph.demo", fromlist=["x"]).build_demo_graph(
        __import__("ntgraph.demo", fromlist=["x"]).DemoConfig(steps=200))


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("ntgraph")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("ntgraph ")
