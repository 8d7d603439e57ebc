"""Shared by the stand-alone benchmarks: machine description and atomic result files (markdown + JSON)."""

from __future__ import annotations

import datetime as _dt
import json
import resource
import socket
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ntgraph._atomic import atomic_write  # noqa: E402

from suite import machine_info  # noqa: E402  (benchmarks/ is on sys.path when a benchmark runs as a script)

__all__ = ["machine_info", "peak_rss_mb", "write_results", "ROOT"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_results(name: str, data: dict[str, Any], markdown: str, out: str | Path) -> tuple[Path, Path]:
    """Write ``<out>/<date>-<host>-<name>.md`` and ``.json`` atomically; returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d}-{socket.gethostname()}-{name}"
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    with atomic_write(md, "w", encoding="utf-8") as f:
        f.write(markdown)
    with atomic_write(js, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    return md, js
