"""benchmarks/history.py: parsing of the three results formats and the regression flags, on synthetic files.

Pure Python: no timing runs.  The expected numbers are written into the
synthetic files, so every parsed value and every flag is known by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import history  # noqa: E402
from ntgraph.errors import FileFormatError  # noqa: E402


def _md(date: str, load: float, rows: list[tuple[str, str, float, float, str]], T=100, B=64, H=128) -> str:
    """An interleaved markdown file in interleaved.py's format."""
    head = (f"Interleaved timing, (T, B, H) = ({T}, {B}, {H}), 2 thread(s), float32, 5 rounds after 1 warm-up; "
            f"torch 2.13.0+cpu; load average at start {load:.2f}, 1.00, 1.00; {date}")
    lines = [head, "", "| mode | implementation | min ms | median ms | median / fastest peer median |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {m} | {impl} | {mn:.1f} | {med:.1f} | {ratio} |" for m, impl, mn, med, ratio in rows]
    return "\n".join(lines) + "\n\nLoad average at the end: 1.17.\n"


def _interleaved_json(date: str, load: float, rows: list[tuple[str, str, float, float]], threads=2) -> dict:
    """An interleaved JSON document in interleaved.py's format (rows: mode, impl, median_ms, ratio)."""
    return {"benchmark": "interleaved", "config": "100x64x128", "threads": threads, "repeats": 5,
            "dtype": "float32", "date_utc": date, "load_average_at_start": [load, 1.0, 1.0],
            "load_average_at_end": [load, 1.0, 1.0], "versions": {"torch": "2.13.0+cpu"},
            "rows": [{"config": "100x64x128", "T": 100, "B": 64, "H": 128, "mode": m, "implementation": impl,
                      "min_ms": med * 0.9, "median_ms": med, "ratio_vs_fastest_peer": ratio}
                     for m, impl, med, ratio in rows]}


def _suite_json(date: str, load: float, rows: list[tuple[str, bool, str, float, float]]) -> dict:
    """A suite.py JSON document (rows: impl, recurrent, mode, median_s, vs_fastest_peer)."""
    return {"machine": {"host": "vm", "threads": 2, "load_average_at_start": [load, 1.0, 1.0], "date_utc": date},
            "mode": "quick", "shd": [{"impl": i, "T": 100, "B": 64, "H": 128, "recurrent": rec, "mode": m,
                                      "median_s": med, "min_s": med, "vs_fastest_peer": ratio}
                                     for i, rec, m, med, ratio in rows],
            "gemm": [], "compile": []}


def test_parse_interleaved_md(tmp_path: Path) -> None:
    p = tmp_path / "a-interleaved.md"
    p.write_text(_md("2026-11-23 14:13 UTC", 0.84, [("rec-train", "ntgraph", 36.2, 40.9, "**0.43**"),
                                                    ("rec-train", "norse", 91.2, 94.7, "1.00"),
                                                    ("ff-infer", "ntgraph", 15.3, 15.7, "**0.47**")], H=512))
    runs = history.parse_interleaved_md(p)
    assert runs == [
        history.Run("a-interleaved.md", "interleaved", "2026-11-23 14:13 UTC", 2, 0.84, 100, 64, 512,
                    "rec", "train", 40.9, 0.43),
        history.Run("a-interleaved.md", "interleaved", "2026-11-23 14:13 UTC", 2, 0.84, 100, 64, 512,
                    "ff", "infer", 15.7, 0.47),
    ]


def test_parse_interleaved_md_rejects_other_header(tmp_path: Path) -> None:
    p = tmp_path / "x.md"
    p.write_text("Interleaved timing of something else\n")
    with pytest.raises(FileFormatError, match="x.md.*not an interleaved header"):
        history.parse_interleaved_md(p)


def test_parse_interleaved_json_and_suite_json(tmp_path: Path) -> None:
    pi = tmp_path / "i.json"
    rows = [("rec-infer", "ntgraph", 20.0, 0.5), ("rec-infer", "sinabs", 40.0, 1.0)]
    pi.write_text(json.dumps(_interleaved_json("2026-11-23 15:00 UTC", 1.5, rows, threads=1)))
    assert history.parse_interleaved_json(pi) == [
        history.Run("i.json", "interleaved", "2026-11-23 15:00 UTC", 1, 1.5, 100, 64, 128, "rec", "infer", 20.0, 0.5)]
    ps = tmp_path / "s.json"
    ps.write_text(json.dumps(_suite_json("2026-11-23 11:48 UTC", 4.87,
                                         [("ntgraph", True, "train", 0.25, 0.8), ("norse", True, "train", 0.3125, 1.0),
                                          ("ntgraph", False, "infer", 0.01, None)])))
    assert history.parse_suite_json(ps) == [
        history.Run("s.json", "suite", "2026-11-23 11:48 UTC", 2, 4.87, 100, 64, 128, "rec", "train", 250.0, 0.8),
        history.Run("s.json", "suite", "2026-11-23 11:48 UTC", 2, 4.87, 100, 64, 128, "ff", "infer", 10.0, None)]


def test_parse_suite_json_names_missing_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"machine": {"threads": 2}, "shd": [{"impl": "ntgraph", "median_s": 1.0}]}))
    with pytest.raises(FileFormatError, match="bad.json.*'date_utc'"):
        history.parse_suite_json(p)


def test_collect_picks_formats_orders_by_date_and_prefers_json(tmp_path: Path) -> None:
    # an md with a JSON beside it is read from the JSON only; unrelated files are ignored
    (tmp_path / "b.md").write_text(_md("2026-11-23 14:00 UTC", 1.0, [("ff-train", "ntgraph", 1.0, 99.0, "**9.99**")]))
    (tmp_path / "b.json").write_text(json.dumps(_interleaved_json("2026-11-23 14:00 UTC", 1.0,
                                                                  [("ff-train", "ntgraph", 30.0, 0.4)])))
    (tmp_path / "a.md").write_text(_md("2026-11-23 13:00 UTC", 1.0, [("ff-train", "ntgraph", 1.0, 32.0, "**0.42**")]))
    (tmp_path / "c.json").write_text(json.dumps(_suite_json("2026-11-23 12:00 UTC", 3.0,
                                                            [("ntgraph", False, "train", 0.05, 0.6)])))
    (tmp_path / "other.json").write_text(json.dumps({"benchmark": "compile_time", "rows": []}))
    (tmp_path / "notes.md").write_text("# Some other benchmark\n")
    (tmp_path / "HISTORY.md").write_text("# Regression table\n")
    runs = history.collect(tmp_path)
    assert [(r.source, r.method, r.median_ms) for r in runs] == [
        ("c.json", "suite", 50.0), ("a.md", "interleaved", 32.0), ("b.json", "interleaved", 30.0)]


def _run(source: str, date: str, load, median: float, ratio, mode: str = "train", method: str = "interleaved"):
    return history.Run(source, method, date, 2, load, 100, 64, 128, "rec", mode, median, ratio)


def test_flags_ratio_and_median_against_previous_run_of_same_workload() -> None:
    """With a baseline of one run (``baseline_runs=1``) each run is compared with the previous one."""
    runs = [
        _run("1", "d1", 1.0, 100.0, 0.50),
        _run("2", "d2", 1.2, 109.0, 0.549),   # +9% median, +9.8% ratio: below 10%, no flag
        _run("3", "d3", 1.1, 125.0, 0.70),    # +14.7% median (loads 1.1 vs 1.2 comparable), +27.5% ratio
        _run("4", "d4", 3.0, 200.0, 0.70),    # +60% median but load 3.0 vs 1.1: not comparable; ratio +0%
        _run("5", "d5", 3.2, 240.0, 0.60),    # +20% median, loads comparable; ratio better
        _run("1", "d1", 1.0, 10.0, 0.50, mode="infer"),   # another workload: first run, no comparison
        _run("s", "d0", 1.0, 10.0, 0.10, method="suite"),  # suite runs are not compared with interleaved ones
    ]
    h = history.flag_history(runs, baseline_runs=1)
    train = h[(100, 64, 128, "rec", "train", 2, "interleaved")]
    assert [e.flags for e in train] == [[], [], ["ratio +28%", "median +15%"], [], ["median +20%"]]
    assert train[1].ratio_change == pytest.approx(0.098, abs=1e-12)
    assert train[2].median_change == pytest.approx(125.0 / 109.0 - 1.0, rel=1e-12)
    assert [e.loads_comparable for e in train] == [None, True, True, False, True]
    assert h[(100, 64, 128, "rec", "infer", 2, "interleaved")][0].flags == []
    assert h[(100, 64, 128, "rec", "train", 2, "suite")][0].ratio_change is None


def test_threshold_and_load_tolerance_are_parameters() -> None:
    runs = [_run("1", "d1", 1.0, 100.0, 0.50), _run("2", "d2", 2.0, 106.0, 0.53)]
    assert history.flag_history(runs)[runs[0].key][1].flags == []
    flags = history.flag_history(runs, threshold=0.05, load_tolerance=1.0)[runs[0].key][1].flags
    assert flags == ["ratio +6%", "median +6%"]


def test_baseline_is_the_median_of_the_previous_three_runs() -> None:
    """One lucky or unlucky run neither raises a flag nor becomes the yardstick; a lasting regression is
    flagged until it is the majority of the window."""
    ratios = [0.40, 0.40, 0.30, 0.40, 0.43, 0.50, 0.50, 0.50]
    runs = [_run(str(i), f"d{i}", 1.0, 100.0 * r / 0.4, r) for i, r in enumerate(ratios)]
    entries = history.flag_history(runs)[runs[0].key]
    # baselines (median of the previous three ratios): -, 0.40, 0.40, 0.40, 0.40, 0.40, 0.43, 0.50
    assert [e.flags != [] for e in entries] == [False, False, False, False, False, True, True, False]
    assert entries[3].ratio_change == pytest.approx(0.0, abs=1e-12)  # the lucky 0.30 is not the yardstick
    assert entries[5].flags == ["ratio +25%", "median +25%"]           # 0.50 over median(0.30, 0.40, 0.43)
    assert entries[6].ratio_change == pytest.approx(0.50 / 0.43 - 1.0, rel=1e-12)  # median(0.40, 0.43, 0.50)
    # only runs at a comparable load enter the median's baseline
    loaded = [_run("a", "d1", 1.0, 100.0, 0.4), _run("b", "d2", 3.0, 300.0, 0.4), _run("c", "d3", 1.2, 112.0, 0.4)]
    last = history.flag_history(loaded)[loaded[0].key][2]
    assert last.loads_comparable and last.flags == ["median +12%"]
    assert last.median_change == pytest.approx(0.12, rel=1e-12)


def test_unknown_load_or_ratio_raises_no_flag() -> None:
    runs = [_run("1", "d1", None, 100.0, None), _run("2", "d2", 1.0, 200.0, 0.9)]
    e = history.flag_history(runs)[runs[0].key][1]
    assert (e.flags, e.loads_comparable, e.ratio_change) == ([], False, None)


def test_check_exit_code_follows_newest_file(tmp_path: Path) -> None:
    rows_ok = [("rec-train", "ntgraph", 1.0, 40.0, "**0.40**")]
    rows_bad = [("rec-train", "ntgraph", 1.0, 40.0, "**0.50**")]  # ratio +25%
    (tmp_path / "1.md").write_text(_md("2026-11-23 13:00 UTC", 1.0, rows_ok))
    (tmp_path / "2.md").write_text(_md("2026-11-23 14:00 UTC", 1.0, rows_bad))
    out = tmp_path / "H.md"
    assert history.main(["--results", str(tmp_path), "--out", str(out), "--check"]) == 1
    text = out.read_text()
    assert "The newest run, `2.md`, regresses in 1 workload(s)" in text
    assert "| 2026-11-23 14:00 | 2.md | 1.00 | 40.0 | +0% | 0.50 | +25% | yes | **ratio +25%** |" in text
    # the regression lasts: still flagged against median(0.40, 0.50) = 0.45, +11%
    (tmp_path / "3.md").write_text(_md("2026-11-23 15:00 UTC", 1.0, rows_bad))
    assert history.main(["--results", str(tmp_path), "--out", str(out), "--check"]) == 1
    # now the majority of the window: median(0.40, 0.50, 0.50) = 0.50, not flagged; the old flags stay
    (tmp_path / "3b.md").write_text(_md("2026-11-23 15:30 UTC", 1.0, rows_bad))
    assert history.main(["--results", str(tmp_path), "--out", str(out), "--check"]) == 0
    assert "**ratio +25%**" in out.read_text() and "**ratio +11%**" in out.read_text()
    # without --check the exit code is 0 even when the newest run regresses
    (tmp_path / "4.md").write_text(_md("2026-11-23 16:00 UTC", 1.0, [("rec-train", "ntgraph", 1.0, 60.0, "**0.60**")]))
    assert history.main(["--results", str(tmp_path), "--out", str(out)]) == 0
    assert history.main(["--results", str(tmp_path), "--out", str(out), "--check"]) == 1
    # the baseline needs at least the previous run
    with pytest.raises(SystemExit):
        history.main(["--results", str(tmp_path), "--out", str(out), "--baseline-runs", "0"])
