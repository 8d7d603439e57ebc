"""Regression table: ntgraph's SHD timings across every committed results file, with regressions flagged.

Reads the files in ``benchmarks/results/``:

* interleaved JSON (``benchmarks/interleaved.py --out X.md`` writes ``X.json``),
* interleaved markdown without a JSON beside it (older runs; the table is our
  own format, parsed from its header line and rows),
* the suite's JSON (``benchmarks/suite.py``), its ``shd`` rows,

and writes ``benchmarks/results/HISTORY.md``: for each workload -- (T, B, H),
network (``rec``/``ff``), mode (``train``/``infer``), thread count and timing
method (``interleaved`` or ``suite``; the two are not compared with each other,
as the suite times each implementation in its own subprocess minutes apart) --
ntgraph's median step time and its ratio to the fastest peer's median, one row
per run in date order (then file name).

A run is flagged against its *baseline*, the median of the previous ``BASELINE_RUNS`` (3) runs of the
same workload, when

* ``ratio``: ntgraph's ratio to the fastest peer grew by more than the
  threshold (10% by default), ``ratio_new > 1.10 * median(previous ratios)``.
  The ratio is the load-robust quantity: load slows every implementation
  alike, to first order;
* ``median``: ntgraph's absolute median grew by more than the threshold,
  ``median_new > 1.10 * median(previous medians)``, over the previous runs
  whose 1-minute load average at start is within ``--load-tolerance`` (0.5 by
  default) of this run's.  Without such a run the absolute times are not
  comparable and no median flag is raised (the table says so).

The median of three makes one run's luck, in either direction, neither a
flag nor the yardstick of the next run: on this shared machine repeats of the
same code moved the ratio by up to ~15% from run to run, and a comparison with
the previous run alone flagged such repeats.  A lasting regression is flagged
from its first run on, until it is the majority of the window.

    .venv/bin/python benchmarks/history.py            # regenerate HISTORY.md
    .venv/bin/python benchmarks/history.py --check    # also exit 1 if the newest run is flagged

"The newest run" is the newest results file (latest date in its header, then
last file name): ``--check`` fails when that file regresses in any of its
workloads.  Workloads whose latest run, in an older file, is flagged are listed
in HISTORY.md but do not fail the check.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ntgraph._atomic import atomic_write  # noqa: E402
from ntgraph.errors import FileFormatError  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
HISTORY_NAME = "HISTORY.md"
THRESHOLD = 0.10
LOAD_TOLERANCE = 0.5
#: Previous runs whose median is a run's baseline.
BASELINE_RUNS = 3

__all__ = ["Run", "Entry", "parse_interleaved_json", "parse_interleaved_md", "parse_suite_json",
           "collect", "flag_history", "render", "main"]


@dataclass(frozen=True)
class Run:
    """ntgraph's timing of one workload in one results file.

    ``median_ms`` is the median step time in milliseconds; ``ratio`` is that
    median divided by the fastest peer's median in the same run (``None`` when
    no peer ran); ``load`` is the 1-minute load average at the start of the run.
    """

    source: str
    method: str
    date_utc: str
    threads: int
    load: Optional[float]
    T: int
    B: int
    H: int
    net: str
    mode: str
    median_ms: float
    ratio: Optional[float]

    @property
    def key(self) -> tuple:
        """The workload: runs with equal keys are compared with each other."""
        return (self.T, self.B, self.H, self.net, self.mode, self.threads, self.method)


@dataclass
class Entry:
    """A run with its changes against its baseline, the median of the previous runs of its workload
    (``None`` for the first run)."""

    run: Run
    ratio_change: Optional[float] = None
    median_change: Optional[float] = None
    loads_comparable: Optional[bool] = None
    flags: list[str] = field(default_factory=list)


def _bad(path: Path, what: str) -> FileFormatError:
    return FileFormatError(f"{path}: {what}")


def parse_interleaved_json(path: Path) -> list[Run]:
    """ntgraph's rows of a JSON file written by ``interleaved.py --out``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        load = data["load_average_at_start"][0] if data.get("load_average_at_start") else None
        runs = []
        for r in data["rows"]:
            if r["implementation"] != "ntgraph":
                continue
            net, mode = r["mode"].split("-")
            runs.append(Run(Path(path).name, "interleaved", data["date_utc"], int(data["threads"]), load,
                            int(r["T"]), int(r["B"]), int(r["H"]), net, mode, float(r["median_ms"]),
                            None if r["ratio_vs_fastest_peer"] is None else float(r["ratio_vs_fastest_peer"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"interleaved JSON lacks or mangles field {exc}; expected the keys written by "
                         "benchmarks/interleaved.py") from exc
    return runs


_HEADER = re.compile(r"\(T, B, H\) = \((\d+), (\d+), (\d+)\), (\d+) thread")
_LOAD = re.compile(r"load average at start ([\d.]+)")
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC)")


def parse_interleaved_md(path: Path) -> list[Run]:
    """ntgraph's rows of an interleaved markdown table (the header line gives (T, B, H), threads, load, date)."""
    text = Path(path).read_text(encoding="utf-8")
    head = text.splitlines()[0] if text else ""
    m, load, date = _HEADER.search(head), _LOAD.search(head), _DATE.search(head)
    if not (m and date):
        raise _bad(path, f"first line {head[:120]!r} is not an interleaved header "
                         "'Interleaved timing, (T, B, H) = (..), N thread(s), ...; YYYY-MM-DD HH:MM UTC'")
    T, B, H, threads = (int(v) for v in m.groups())
    runs = []
    for line in text.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[1] != "ntgraph":
            continue
        try:
            net, mode = cells[0].split("-")
            ratio = None if cells[4] == "-" else float(cells[4])
            runs.append(Run(Path(path).name, "interleaved", date.group(1), threads,
                            float(load.group(1)) if load else None, T, B, H, net, mode, float(cells[3]), ratio))
        except ValueError as exc:
            raise _bad(path, f"row {line.strip()!r}: expected '| net-mode | ntgraph | min | median | ratio |'") from exc
    return runs


def parse_suite_json(path: Path) -> list[Run]:
    """ntgraph's SHD rows of a ``suite.py`` JSON file (rows that errored are skipped)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        machine = data["machine"]
        load = machine["load_average_at_start"][0] if machine.get("load_average_at_start") else None
        runs = []
        for r in data["shd"]:
            if r.get("impl") != "ntgraph" or "median_s" not in r:
                continue
            ratio = r.get("vs_fastest_peer")
            runs.append(Run(Path(path).name, "suite", machine["date_utc"], int(machine["threads"]), load,
                            int(r["T"]), int(r["B"]), int(r["H"]), "rec" if r["recurrent"] else "ff", r["mode"],
                            1e3 * float(r["median_s"]), None if ratio is None else float(ratio)))
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(path, f"suite JSON lacks or mangles field {exc}; expected 'machine' and 'shd' as written by "
                         "benchmarks/suite.py") from exc
    return runs


def collect(results: Path) -> list[Run]:
    """Every ntgraph SHD run in the files of ``results`` (other benchmarks' files are ignored), in date order."""
    runs: list[Run] = []
    for path in sorted(Path(results).iterdir()):
        if path.suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise _bad(path, f"not valid JSON ({exc})") from exc
            if isinstance(data, dict) and data.get("benchmark") == "interleaved":
                runs += parse_interleaved_json(path)
            elif isinstance(data, dict) and "shd" in data and "machine" in data:
                runs += parse_suite_json(path)
        elif path.suffix == ".md" and not path.with_suffix(".json").exists():
            with path.open(encoding="utf-8") as fh:
                first = fh.readline()
            if first.startswith("Interleaved timing"):
                runs += parse_interleaved_md(path)
    return sorted(runs, key=lambda r: (r.date_utc, r.source))


def flag_history(runs: Sequence[Run], threshold: float = THRESHOLD,
                 load_tolerance: float = LOAD_TOLERANCE,
                 baseline_runs: int = BASELINE_RUNS) -> dict[tuple, list[Entry]]:
    """Group runs by workload (in the given order) and flag each against its baseline: the median of the
    previous ``baseline_runs`` runs of its workload (see the module docstring).

    ``ratio`` flag: ``ratio_new > (1 + threshold) * median(previous ratios)``.  ``median`` flag:
    ``median_new > (1 + threshold) * median(previous medians at a load within load_tolerance)``.
    """
    out: dict[tuple, list[Entry]] = {}
    for run in runs:
        history = out.setdefault(run.key, [])
        entry = Entry(run)
        window = [e.run for e in history[-baseline_runs:]]
        if window:
            ratios = [r.ratio for r in window if r.ratio]
            if run.ratio is not None and ratios:
                base = statistics.median(ratios)
                entry.ratio_change = run.ratio / base - 1.0
                if run.ratio > (1.0 + threshold) * base:
                    entry.flags.append(f"ratio +{100 * entry.ratio_change:.0f}%")
            comparable = [r.median_ms for r in window
                          if run.load is not None and r.load is not None and abs(run.load - r.load) <= load_tolerance]
            entry.loads_comparable = bool(comparable)
            # without a comparable load the change is shown against all previous medians, never flagged
            base = statistics.median(comparable or [r.median_ms for r in window])
            entry.median_change = run.median_ms / base - 1.0
            if comparable and run.median_ms > (1.0 + threshold) * base:
                entry.flags.append(f"median +{100 * entry.median_change:.0f}%")
        history.append(entry)
    return out


def newest_source(history: dict[tuple, list[Entry]]) -> Optional[str]:
    """The results file of the newest run: latest date, then last file name (``None`` without runs)."""
    runs = [e.run for entries in history.values() for e in entries]
    return max(runs, key=lambda r: (r.date_utc, r.source)).source if runs else None


def newest_flagged(history: dict[tuple, list[Entry]]) -> list[Entry]:
    """The flagged rows of the newest run (the newest results file): what ``--check`` fails on."""
    newest = newest_source(history)
    return [e for entries in history.values() for e in entries if e.run.source == newest and e.flags]


def latest_flagged(history: dict[tuple, list[Entry]]) -> list[Entry]:
    """The latest run of each workload, where that run is flagged (older files included; for information)."""
    return [entries[-1] for entries in history.values() if entries[-1].flags]


def _pct(v: Optional[float]) -> str:
    return "" if v is None else f"{100 * v:+.0f}%"


def render(history: dict[tuple, list[Entry]], threshold: float = THRESHOLD,
           load_tolerance: float = LOAD_TOLERANCE, baseline_runs: int = BASELINE_RUNS) -> str:
    """The markdown of HISTORY.md: a summary of flagged newest runs, then one table per workload."""
    t, lt = f"{100 * threshold:.0f}%", f"{load_tolerance:g}"
    lines = [
        "# Regression table: ntgraph on the SHD workloads, run by run",
        "",
        "Generated by `.venv/bin/python benchmarks/history.py` from the results files in this folder; do not edit.",
        "Median is ntgraph's median step time (ms); ratio is that median over the fastest peer's median in the "
        "same run (below 1: ntgraph is faster).  Runs are in date order; each is compared with its baseline, "
        f"the median of the previous {baseline_runs} runs of the same workload (same T, B, H, network, mode, "
        "thread count and timing method), so that one lucky or unlucky run neither raises a flag nor becomes "
        "the next run's yardstick.",
        "",
        f"Flags: **ratio** when the ratio grew by more than {t} over the baseline (load-robust: load slows every "
        f"implementation alike, to first order); **median** when the absolute median grew by more than {t} over "
        f"the median of those previous runs whose 1-minute load average at start is within {lt} of this run's "
        "(column `loads`: `yes`/`no`; with `no` there is none, the change is shown against all of them and no "
        "median flag is raised).  Suite runs time each implementation "
        "in its own subprocess minutes apart and were taken on a loaded machine: their ratios are noisier than "
        "the interleaved runs'.",
        "",
    ]
    flagged, newest = newest_flagged(history), newest_source(history)
    if flagged:
        lines.append(f"**The newest run, `{newest}`, regresses in {len(flagged)} workload(s)** (`--check` exits 1):")
    else:
        lines.append(f"The newest run, `{newest}`, is not flagged in any workload (`--check` exits 0).")
    lines.append("")
    for e in flagged:
        r = e.run
        lines.append(f"- {r.T}x{r.B}x{r.H} {r.net}-{r.mode}, {r.threads} thread(s), {r.method}: {', '.join(e.flags)}")
    stale = [e for e in latest_flagged(history) if e.run.source != newest]
    if stale:
        lines += ([""] if flagged else []) + ["Workloads whose latest run, in an older file, is flagged "
                  "(not re-measured since; `--check` ignores them):", ""]
        for e in stale:
            r = e.run
            lines.append(f"- {r.T}x{r.B}x{r.H} {r.net}-{r.mode}, {r.threads} thread(s), {r.method}: "
                         f"{', '.join(e.flags)} in `{r.source}`")
    lines.append("")
    for key in sorted(history):
        T, B, H, net, mode, threads, method = key
        lines += [f"## (T, B, H) = ({T}, {B}, {H}), {net}-{mode}, {threads} thread(s), {method}", "",
                  "| date (UTC) | file | load | median ms | change | ratio | change | loads | flag |",
                  "|---|---|---:|---:|---:|---:|---:|---|---|"]
        for e in history[key]:
            r = e.run
            load = "-" if r.load is None else f"{r.load:.2f}"
            ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
            comp = "" if e.loads_comparable is None else ("yes" if e.loads_comparable else "no")
            flag = ", ".join(f"**{f}**" for f in e.flags)
            lines.append(f"| {r.date_utc.replace(' UTC', '')} | {r.source} | {load} | {r.median_ms:.1f} | "
                         f"{_pct(e.median_change)} | {ratio} | {_pct(e.ratio_change)} | {comp} | {flag} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of results files")
    parser.add_argument("--out", type=Path, default=None, help=f"output markdown (default RESULTS/{HISTORY_NAME})")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="relative slow-down flagged (0.10: 10%%)")
    parser.add_argument("--load-tolerance", type=float, default=LOAD_TOLERANCE,
                        help="largest difference of 1-minute load averages for which absolute medians are compared")
    parser.add_argument("--baseline-runs", type=int, default=BASELINE_RUNS,
                        help="previous runs whose median is a run's baseline (1: the previous run alone)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the newest run (newest results file) is flagged in any workload "
                             "(the table is written too)")
    args = parser.parse_args(argv)
    if args.baseline_runs < 1:
        parser.error(f"--baseline-runs {args.baseline_runs}: expected at least 1 (the previous run)")
    history = flag_history(collect(args.results), args.threshold, args.load_tolerance, args.baseline_runs)
    out = args.out or args.results / HISTORY_NAME
    with atomic_write(out, "w", encoding="utf-8") as fh:
        fh.write(render(history, args.threshold, args.load_tolerance, args.baseline_runs))
    flagged = newest_flagged(history)
    print(f"wrote {out}: {sum(len(v) for v in history.values())} runs of {len(history)} workloads; "
          f"the newest run, {newest_source(history)}, is flagged in {len(flagged)} workload(s)")
    for e in flagged:
        r = e.run
        print(f"  {r.T}x{r.B}x{r.H} {r.net}-{r.mode} {r.threads}t {r.method}: {', '.join(e.flags)} ({r.source})",
              file=sys.stderr)
    return 1 if (args.check and flagged) else 0


if __name__ == "__main__":
    raise SystemExit(main())
