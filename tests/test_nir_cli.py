"""The command line with NIR files: export, import, run and info."""

from __future__ import annotations

import warnings
from pathlib import Path

import nir
import numpy as np
import pytest

import ntgraph as ntg
from backends.nirio import NirExportWarning, NirImportWarning
from ntgraph.cli import main


def network() -> ntg.Graph:
    g = ntg.Graph("cli-nir", seed=5)
    g.input("x", 3, excitatory=[1, 1, -1])
    g.population("h", ntg.LIF(tau_mem=5e-3, reset="subtract"), 4)
    g.dense("x", "h", scale=3.0, bias=np.full(4, 0.1))
    g.dense("h", "h", p=0.5, no_self=True)
    g.population("o", ntg.LI(tau_mem=5e-3), 2)
    g.dense("h", "o", delay=2)
    g.output("y", "o")
    g.output("s", "h")
    return g


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    x = (np.random.default_rng(0).random((25, 2, 3)) < 0.5) * 2.0
    np.save(tmp_path / "x.npy", x)
    return {"ntg": ntg.save(network(), tmp_path / "net.ntg"), "x": tmp_path / "x.npy", "dir": tmp_path}


def test_export_then_import_gives_back_the_same_graph(files, capsys):
    out = files["dir"] / "net.nir"
    with pytest.warns(NirExportWarning, match="'h' \\(LIF\\): reset='subtract'"):
        assert main(["export", str(files["ntg"]), "--format", "nir", "-o", str(out), "--dt", "1e-3"]) == 0
    assert "exported 'cli-nir' as nir" in capsys.readouterr().out
    nir.read(out)  # NIR's own reader, default type check
    back = files["dir"] / "back.ntg"
    assert main(["import", str(out), "-o", str(back)]) == 0
    assert ntg.load(back) == network()


def test_export_options_reach_the_backend(files):
    out = files["dir"] / "lin.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirExportWarning)
        g = network()
        g.one_to_one("o", g.population("o2", ntg.LI(tau_mem=5e-3), 2), weight=2.0)
        ntg.save(g, files["dir"] / "o2o.ntg")
        assert main(["export", str(files["dir"] / "o2o.ntg"), "--format", "nir", "-o", str(out), "--dt", "1e-3",
                     "--set", "one_to_one=linear"]) == 0
    assert isinstance(nir.read(out).nodes["o->o2"], nir.Linear)
    assert main(["export", str(files["ntg"]), "--format", "nir", "-o", str(out), "--dt", "1e-3",
                 "--set", "strict=True"]) == 2


def test_run_a_nir_file_directly(files, capsys):
    out = files["dir"] / "net.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NirExportWarning)
        main(["export", str(files["ntg"]), "--format", "nir", "-o", str(out), "--dt", "1e-3"])
    res = files["dir"] / "res.npz"
    assert main(["run", str(out), "--input", str(files["x"]), "--dt", "1e-3", "--out", str(res),
                 "--record", "h.v"]) == 0
    got = np.load(res)
    want = ntg.simulate(network(), np.load(files["x"]), dt=1e-3, record=["h.v"])
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert "simulated 25 steps of 'cli-nir'" in capsys.readouterr().out


def test_info_and_import_of_a_foreign_file_with_a_dialect(files, capsys):
    dt = 1e-4
    beta = np.array([0.8, 0.9])
    tau = dt / (1 - beta)
    peer = nir.NIRGraph.from_list(
        nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
        nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
    )
    path = files["dir"] / "peer.nir"
    nir.write(path, peer)
    with pytest.warns(NirImportWarning, match="snntorch"):
        assert main(["info", str(path)]) == 0
    assert "LIF" in capsys.readouterr().out
    out = files["dir"] / "peer.ntg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing assumed: the dialect and the reset are given
        assert main(["import", str(path), "-o", str(out), "--set", "dialect=snntorch", "--set", "reset=zero",
                     "--set", "reset_delay=False"]) == 0
    g = ntg.load(out)
    assert g["lif"].model.reset == "zero"
    np.testing.assert_allclose(1 - dt / g["lif"].model.tau_mem, beta, rtol=1e-12)


def test_bad_nir_files_give_clean_errors(files, capsys):
    bad = files["dir"] / "bad.nir"
    bad.write_bytes(b"\x89HDF\r\n garbage")
    assert main(["info", str(bad)]) == 2
    assert "not a NIR file" in capsys.readouterr().err
    assert main(["import", str(files["dir"] / "none.nir"), "-o", str(files["dir"] / "o.ntg")]) == 2
    assert "does not exist" in capsys.readouterr().err
