"""``report.html``: one self-contained page per run (plots embedded), for people who would
rather look than read. First the verdict (metrics beside the baselines), then the plots,
then the strongest alarms with the channels behind them, then the details."""

from __future__ import annotations

import base64
import html
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import yaml

from streamae.evaluate.report import HEADLINE

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border:1px solid #ddd;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
tr.best td{background:#eef7ee}.meta{color:#666}img{max-width:100%;border:1px solid #eee}
pre{background:#f8f8f8;padding:1em;overflow:auto;font-size:12px}
.bar{display:inline-block;height:9px;background:#c44;vertical-align:middle;margin-right:4px}
"""


def git_sha() -> str:
    """The source checkout's commit, when streamae runs from one."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_html(report: dict[str, Any], events: list[dict[str, Any]], out_dir: Path,
               top_alarms: int = 15) -> Path:
    e = html.escape
    parts = [f"<!doctype html><meta charset=utf-8><title>streamae report</title>"
             f"<style>{STYLE}</style><h1>streamae backtest report</h1>",
             f"<p class=meta>streamae {e(report['streamae_version'])} (git "
             f"{e(report.get('git_sha', 'unknown'))}), model {e(report['model_version'])}; "
             f"{report['rows']:,} rows, {report['keys']} keys, {report['events']} events"
             + (f", {report['evaluated_rows']:,} rows evaluated" if "evaluated_rows" in report
                else "") + ".</p>"]
    if "detectors" in report:
        parts += ["<h2>Does the autoencoder earn its cost? Macro average over keys</h2>",
                  _table({n: r["macro"] for n, r in report["detectors"].items()}),
                  "<p class=meta>AUC-PR: average precision of the raw score; VUS-PR: the same "
                  "with label buffers (partial credit near segments); event metrics count an "
                  "alarm as a hit when it overlaps a labelled segment; composite F1 = point "
                  "precision x event recall; NAB: standard profile, alarm starts as "
                  "detections. Best value per column shaded. No point adjustment unless a "
                  "column says so.</p>"]
    plots = [out_dir / name for name in report.get("plots", [])]
    if plots:
        parts.append("<h2>Signal, score, threshold and alarms</h2><p class=meta>Gold: labelled "
                     "anomalies; red: alarms; orange line: the threshold each point was "
                     "judged against.</p>")
        for p in plots:
            data = base64.b64encode(p.read_bytes()).decode()
            parts.append(f"<h3>{e(p.stem[5:])}</h3><img alt='{e(p.stem)}' "
                         f"src='data:image/png;base64,{data}'>")
    parts += ["<h2>Strongest alarms and the channels behind them</h2>", _alarms(events, top_alarms)]
    for name, res in report.get("detectors", {}).items():
        parts.append(f"<details><summary>{e(name)}: metrics per key</summary>"
                     f"{_table(res['per_key'], shade=False)}</details>")
    parts.append("<h2>Resolved configuration</h2><pre>" + e(yaml.safe_dump(
        json.loads(json.dumps(report["config"])), sort_keys=False)) + "</pre>")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts))
    return path


LOWER_IS_BETTER = {"mean_delay_s", "false_alarms_per_day", "alarms", "alarm_time_share"}


def _table(rows: dict[str, dict[str, float]], shade: bool = True) -> str:
    e = html.escape
    cols = [c for c in HEADLINE if any(c in r for r in rows.values())]
    cols += sorted({c for r in rows.values() for c in r if c.startswith("point_adjusted")})
    best = {}
    if shade and len(rows) > 1:
        for c in cols:
            vals = {n: r.get(c) for n, r in rows.items() if _num(r.get(c))}
            if vals and c != "alarms":
                pick = min if c in LOWER_IS_BETTER else max
                best[c] = pick(vals, key=vals.get)
    head = "<tr><th>detector</th>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>"
    body = []
    for name, r in rows.items():
        cells = "".join(
            f"<td style='{'background:#dff0d8' if best.get(c) == name else ''}'>"
            f"{_fmt(r.get(c))}</td>" for c in cols)
        body.append(f"<tr><td>{e(str(name))}</td>{cells}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _alarms(events: list[dict[str, Any]], limit: int) -> str:
    e = html.escape
    peak: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev["status"] != "resolved" and ev["score"] >= peak.get(ev["alarm_id"], {}).get(
                "score", -math.inf):
            peak[ev["alarm_id"]] = ev
    ends = {ev["alarm_id"]: ev["end"] for ev in events if ev["status"] == "resolved"}
    top = sorted(peak.values(), key=lambda ev: -ev["score"] / max(ev["threshold"], 1e-12))
    if not top:
        return "<p>No alarms.</p>"
    rows = []
    for ev in top[:limit]:
        chans = "".join(f"<div><span class=bar style='width:{60 * c['share']:.0f}px'></span>"
                        f"{e(c['channel'])} {c['share']:.0%}</div>" for c in ev["top_channels"])
        rows.append(f"<tr><td>{e(ev['key'])}</td><td>{e(ev['start'])}</td>"
                    f"<td>{e(ends.get(ev['alarm_id']) or 'open')}</td><td>{e(ev['severity'])}</td>"
                    f"<td>{ev['score'] / max(ev['threshold'], 1e-12):.1f}x</td>"
                    f"<td style='text-align:left'>{chans}</td></tr>")
    return ("<table><tr><th>key</th><th>start</th><th>end</th><th>severity</th>"
            "<th>peak / threshold</th><th>top channels</th></tr>" + "".join(rows) + "</table>")


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not math.isnan(x)


def _fmt(x: Any) -> str:
    if not _num(x):
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:.3f}"
