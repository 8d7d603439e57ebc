"""Report files: ``report.md`` (with PNG files beside it), ``report.html`` (self-contained) and ``report.json``.

Every file is written atomically (:func:`ntgraph._atomic.atomic_write`).  The
HTML page embeds its figures as base64 PNG ``<img>`` elements and its style
inline, so it can be mailed or archived as one file; it loads nothing.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Optional

from .._atomic import atomic_write
from ..errors import ValidationError
from . import plots
from .report import ComparisonReport

__all__ = ["write_report", "markdown", "html_page", "METRIC_NOTES"]

#: One line per metric, shown under the table of both reports.
METRIC_NOTES = (
    ("agreement", "fraction of agreeing entries against the reference: every spike entry (step, sample, neuron) of "
                  "every spiking population must be identical, every entry of a non-spiking Output (readout) within "
                  "atol + rtol·|ref|"),
    ("count r", "Pearson correlation of per-neuron spike counts (1 when identical, n/a when one side is constant)"),
    ("van Rossum", "mean over spike trains of D, D² = (1/τ) ∫ (f - g)² dt with exponential kernels exp(-t/τ) "
                   "(van Rossum 2001); one unmatched spike gives 0.707"),
    ("first divergence", "first step at which a spike differs, or an analog value of a non-spiking population or "
                         "readout differs by more than atol + rtol·|ref|"),
    ("max |Δv|", "largest absolute voltage difference over all recorded populations and steps"),
    ("accuracy", "argmax of the readout summed over time (spiking) or of its maximum over time (analog) "
                 "against the labels"),
    ("time/step", "wall time of the simulator's run (lowering and import included) divided by the number of steps"),
)

FIGURES = (
    ("agreement.png", "Agreement per simulator", plots.agreement_png),
    ("raster.png", "Spike rasters side by side", plots.raster_png),
    ("voltage.png", "Voltage traces of the first diverging neuron", plots.voltage_png),
)


def _figures(report: ComparisonReport, min_agreement: Optional[float]) -> list[tuple[str, str, bytes]]:
    out = []
    for name, title, fn in FIGURES:
        data = fn(report, min_agreement) if fn is plots.agreement_png else fn(report)
        if data is not None:
            out.append((name, title, data))
    return out


def _settings_rows(report: ComparisonReport) -> list[tuple[str, str]]:
    s = report.settings
    return [
        ("graph", report.graph_name),
        ("reference", f"{s['reference']} ({s['dtype']})"),
        ("steps x samples", f"{s['steps']} x {s['batch']}"),
        ("dt", f"{s['dt'] * 1e3:g} ms"),
        ("timing", s["timing"]),
        ("discretization", s["discretization"]),
        ("van Rossum τ", f"{s['van_rossum_tau_s'] * 1e3:g} ms"),
        ("analog tolerance", "by precision (float64 1e-9, float32 1e-4, fixed point 1e-2)" if s["atol"] is None
         else f"atol {s['atol']:g}, rtol {s['rtol'] if s['rtol'] is not None else s['atol']:g}"),
        ("readout", s.get("readout") or "-"),
    ]


def _gate(report: ComparisonReport, min_agreement: Optional[float]) -> Optional[str]:
    if min_agreement is None:
        return None
    worst = report.min_agreement()
    if report.passes(min_agreement):
        return f"PASS: every compared simulator agrees at >= {min_agreement:g} (lowest {worst:.4f})"
    if worst is None:
        return f"FAIL: no simulator besides the reference ran, so nothing meets --min-agreement {min_agreement:g}"
    bad = [r.name for r in report.compared if r.agreement is not None and r.agreement < min_agreement]
    return f"FAIL: below --min-agreement {min_agreement:g}: {', '.join(bad)} (lowest {worst:.4f})"


def _findings(report: ComparisonReport) -> list[tuple[str, str]]:
    """(simulator, sentence): why a simulator was not compared, and every diagnosed divergence."""
    out = []
    for r in report.results:
        if r.status in ("skipped", "failed"):
            out.append((r.name, f"{r.status}: {r.reason}"))
        for d in r.diagnoses:
            if d["observed"]:
                out.append((r.name, d["text"]))
        if r.status == "ok" and r.divergence is not None and not any(d["observed"] for d in r.diagnoses):
            out.append((r.name, "diverges (first at " + r.divergence.describe() + "); no rule explains it"))
    return out


def _details(report: ComparisonReport) -> list[tuple[str, list[str]]]:
    """Per simulator, the lines of its section: reason, first divergence, diagnoses, warnings, notes."""
    out = []
    for r in report.results:
        lines = [f"{r.description}; backend '{r.backend}', route {r.route}, precision {r.precision or '-'}"]
        if r.reason:
            lines.append(f"{r.status}: {r.reason}")
        if r.status == "ok":
            lines.append("first divergence: " + ("none" if r.divergence is None else r.divergence.describe()))
            if r.keys_missing:
                lines.append(f"not compared (not recorded by this simulator): {', '.join(r.keys_missing)}")
        for d in r.diagnoses:
            lines.append(("diagnosis: " if d["observed"] else "possible issue (no divergence seen): ") + d["text"])
        for w in r.warnings:
            lines.append(f"warning: {w}")
        for n in r.notes:
            lines.append(f"note: {n}")
        out.append((r.name, lines))
    return out


# ----------------------------------------------------------------------------- markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(report: ComparisonReport, figures: list[tuple[str, str, bytes]], min_agreement: Optional[float]) -> str:
    lines = [f"# Simulator comparison: {report.graph_name}", ""]
    gate = _gate(report, min_agreement)
    if gate:
        lines += [f"**{gate}**", ""]
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_md_escape(str(v))} |" for k, v in _settings_rows(report)]
    lines += ["", "## Results", ""]
    header = report.header()
    lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in report.rows():
        lines.append("| " + " | ".join(_md_escape(c) for c in row) + " |")
    lines += [""]
    findings = _findings(report)
    if findings:
        lines += ["## Findings", ""]
        lines += [f"* **{name}**: {_md_escape(text)}" for name, text in findings]
        lines.append("")
    lines += ["Metrics:", ""]
    lines += [f"* **{name}**: {text}" for name, text in METRIC_NOTES]
    lines.append("")
    if figures:
        lines += ["## Figures", ""]
        for file, title, _ in figures:
            lines += [f"### {title}", "", f"![{title}]({file})", ""]
    lines += ["## Simulators", ""]
    for name, detail in _details(report):
        lines.append(f"### {name}")
        lines.append("")
        lines += [f"* {_md_escape(line)}" for line in detail]
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- HTML
STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1150px;
       color: #1b1b1b; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.reference td { background: #f7f7ff; } tr.skipped td, tr.failed td { color: #777; }
.pass { color: #0a6b0a; font-weight: bold; } .fail { color: #b00020; font-weight: bold; }
.bad { color: #b00020; font-weight: bold; } .good { color: #0a6b0a; }
ul.notes li { margin: 0.15em 0; } .diag { color: #8a4b00; } .warn { color: #555; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
"""


def html_page(report: ComparisonReport, figures: list[tuple[str, str, bytes]], min_agreement: Optional[float]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>Simulator comparison: {e(report.graph_name)}</title>", f"<style>{STYLE}</style></head><body>",
             f"<h1>Simulator comparison: {e(report.graph_name)}</h1>"]
    gate = _gate(report, min_agreement)
    if gate:
        cls = "pass" if gate.startswith("PASS") else "fail"
        parts.append(f"<p class=\"{cls}\" id=\"gate\">{e(gate)}</p>")
    parts.append("<table id=\"settings\"><tbody>")
    parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in _settings_rows(report)]
    parts.append("</tbody></table>")
    parts.append("<h2>Results</h2><table id=\"results\"><thead><tr>")
    parts += [f"<th>{e(h)}</th>" for h in report.header()]
    parts.append("</tr></thead><tbody>")
    for r, row in zip(report.results, report.rows()):
        cells = []
        for k, c in enumerate(row):
            cls = "num" if k >= 3 else ""
            if k == 3 and r.status == "ok" and r.agreement is not None:
                below = min_agreement is not None and r.agreement < min_agreement
                cls += " bad" if below else (" good" if r.agreement >= 1.0 else "")
            cells.append(f"<td class=\"{cls.strip()}\">{e(c)}</td>")
        parts.append(f"<tr class=\"{e(r.status)}\">" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    findings = _findings(report)
    if findings:
        parts.append("<h2>Findings</h2><ul class=\"notes\" id=\"findings\">")
        parts += [f"<li><b>{e(n)}</b>: <span class=\"diag\">{e(t)}</span></li>" for n, t in findings]
        parts.append("</ul>")
    parts.append("<details><summary>How the metrics are defined</summary><ul class=\"notes\">")
    parts += [f"<li><b>{e(n)}</b>: {e(t)}</li>" for n, t in METRIC_NOTES]
    parts.append("</ul></details>")
    if figures:
        parts.append("<h2>Figures</h2>")
        for file, title, data in figures:
            b64 = base64.b64encode(data).decode("ascii")
            parts.append(f"<figure><img alt=\"{e(title)}\" data-name=\"{e(file)}\" src=\"data:image/png;base64,{b64}\">"
                         f"<figcaption>{e(title)}</figcaption></figure>")
    parts.append("<h2>Simulators</h2>")
    for name, detail in _details(report):
        parts.append(f"<h3>{e(name)}</h3><ul class=\"notes\">")
        for line in detail:
            cls = "diag" if line.startswith(("diagnosis", "possible issue")) else ("warn" if line.startswith("warning") else "")
            parts.append(f"<li class=\"{cls}\">{e(line)}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- files
def write_report(report: ComparisonReport, directory: Any, *, min_agreement: Optional[float] = None,
                 plots: bool = True) -> dict[str, Any]:
    """Write the three report files (and the PNGs the markdown links) into ``directory``, creating it."""
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise ValidationError(f"report directory {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(report, min_agreement) if plots else []
    written: dict[str, Any] = {"plots": []}
    for file, _, data in figures:
        with atomic_write(out / file, "wb") as fh:
            fh.write(data)
        written["plots"].append(out / file)
    payload = report.to_dict()
    payload["gate"] = None if min_agreement is None else {"min_agreement": min_agreement,
                                                           "passed": report.passes(min_agreement)}
    payload["plots"] = [file for file, _, _ in figures]
    with atomic_write(out / "report.json", "w") as fh:
        json.dump(payload, fh, indent=2, allow_nan=False)
        fh.write("\n")
    with atomic_write(out / "report.md", "w") as fh:
        fh.write(markdown(report, figures, min_agreement))
    with atomic_write(out / "report.html", "w") as fh:
        fh.write(html_page(report, figures, min_agreement))
    written.update(json=out / "report.json", md=out / "report.md", html=out / "report.html")
    return written

