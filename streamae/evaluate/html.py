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
table{border-collapse:collapse;font-size:12px;width:100%;table-layout:auto}
td,th{padding:3px 6px;border:1px solid #ddd;text-align:right}
th{background:#f4f4f4;white-space:normal;vertical-align:bottom;font-weight:600}
td:first-child,th:first-child{text-align:left;white-space:nowrap}
.verdict{font-size:1.1em;background:#f6f8fb;border-left:4px solid #36c;padding:.6em 1em}
dl.legend{font-size:12px;color:#555;columns:2}dl.legend dt{font-weight:600}
dl.legend dd{margin:0 0 .4em 0}
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
             f"{report['rows']:,} rows, {_n(report['keys'], 'key')}, "
             f"{_n(report['events'], 'event')}"
             + (f", {report['evaluated_rows']:,} rows evaluated" if "evaluated_rows" in report
                else "") + ".</p>"]
    if "detectors" in report:
        macro = {n: r["macro"] for n, r in report["detectors"].items()}
        parts += [f"<p class=verdict>{e(verdict(macro))}</p>",
                  "<h2>Does the autoencoder earn its cost? Macro average over keys</h2>",
                  _table(macro), _legend(macro)]
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


LOWER_IS_BETTER = {"mean_delay_s", "false_alarms_per_day", "alarms", "alarm_time_share",
                   "normal_in_alarm"}

#: Column titles and what they mean, for the tables and their legend.
COLUMNS = {
    "auc_pr": ("AUC-PR", "average precision of the raw score on point labels (ranking, "
               "whatever the threshold)"),
    "vus_pr": ("VUS-PR", "AUC-PR with label buffers: partial credit near labelled segments"),
    "roc_auc": ("ROC-AUC", "area under the ROC curve of the raw score"),
    "event_precision": ("event precision", "alarms that overlap a labelled segment / all alarms"),
    "event_recall": ("event recall", "labelled segments with an alarm / all segments"),
    "event_f1": ("event F1", "harmonic mean of event precision and recall"),
    "composite_f1": ("composite F1", "point precision x event recall: neither an endless "
                     "alarm nor silence scores well"),
    "mean_delay_s": ("mean delay (s)", "segment start to the first alarm inside it"),
    "false_alarms_per_day": ("false alarms / day", "alarms starting outside segments, per "
                             "day of normal time"),
    "nab_standard": ("NAB score", "NAB standard profile: 100 perfect, 0 = never alarming"),
    "alarms": ("alarms", "alarms raised"),
    "alarm_time_share": ("time in alarm", "share of points inside an alarm"),
    "normal_in_alarm": ("normal in alarm", "share of normal (unlabelled) points inside an "
                        "alarm: what an endless alarm costs"),
}


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def verdict(macro: dict[str, dict[str, float]]) -> str:
    """One line: which detector ranks best and by how much, and how streamae's own
    alarms compare with the best baseline's."""
    ours = next((n for n in macro if n.startswith("streamae")), None)
    ranked = sorted((n for n in macro if _num(macro[n].get("auc_pr"))),
                    key=lambda n: -macro[n]["auc_pr"])
    if ours is None or not ranked:
        return "No labelled segments to judge the detectors by."
    mine = macro[ours]
    others = [n for n in ranked if n != ours]
    if not others:
        return (f"{ours}: AUC-PR {mine.get('auc_pr', math.nan):.3f}, event F1 "
                f"{mine.get('event_f1', math.nan):.3f}, composite F1 "
                f"{mine.get('composite_f1', math.nan):.3f} (no baseline ran: add "
                "--baselines pca,isolation-forest to compare).")
    rival = others[0]
    ratio = mine["auc_pr"] / max(macro[rival]["auc_pr"], 1e-12)
    head = (f"{ours} ranks anomalies best: AUC-PR {mine['auc_pr']:.3f}, {ratio:.2f}x the "
            f"best baseline ({rival}, {macro[rival]['auc_pr']:.3f})" if ranked[0] == ours else
            f"{rival} ranks anomalies best: AUC-PR {macro[rival]['auc_pr']:.3f}; {ours} "
            f"{mine['auc_pr']:.3f} ({ratio:.2f}x)")
    alarms = [n for n in others if _num(macro[n].get("composite_f1"))]
    if not alarms or not _num(mine.get("composite_f1")):
        return head + "."
    best = max(alarms, key=lambda n: macro[n]["composite_f1"])
    return (f"{head}. Its own alarms: composite F1 {mine['composite_f1']:.3f} vs "
            f"{macro[best]['composite_f1']:.3f} ({best}), event F1 "
            f"{mine.get('event_f1', math.nan):.3f} vs {macro[best].get('event_f1', math.nan):.3f}.")


def _legend(rows: dict[str, dict[str, float]]) -> str:
    cols = [c for c in HEADLINE if any(c in r for r in rows.values())]
    items = "".join(f"<dt>{html.escape(COLUMNS[c][0])}</dt><dd>{html.escape(COLUMNS[c][1])}"
                    "</dd>" for c in cols if c in COLUMNS)
    return (f"<dl class=legend>{items}</dl><p class=meta>Best value per column shaded. No "
            "point adjustment unless a column says so.</p>")


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
    head = "<tr><th>detector</th>" + "".join(
        f"<th title='{e(COLUMNS.get(c, (c, c))[1])}'>{e(COLUMNS.get(c, (c.replace('_', ' '),))[0])}"
        "</th>" for c in cols) + "</tr>"
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
    single = all(len(ev["top_channels"]) <= 1 for ev in top)  # one channel: nothing to say
    for ev in top[:limit]:
        chans = "" if single else "<td style='text-align:left'>" + "".join(
            f"<div><span class=bar style='width:{60 * c['share']:.0f}px'></span>"
            f"{e(c['channel'])} {c['share']:.0%}</div>" for c in ev["top_channels"]) + "</td>"
        rows.append(f"<tr><td>{e(ev['key'])}</td><td>{e(ev['start'])}</td>"
                    f"<td>{e(ends.get(ev['alarm_id']) or 'open')}</td><td>{e(ev['severity'])}</td>"
                    f"<td>{ev['score'] / max(ev['threshold'], 1e-12):.1f}x</td>{chans}</tr>")
    return ("<table><tr><th>key</th><th>start</th><th>end</th><th>severity</th>"
            "<th>peak / threshold</th>" + ("" if single else "<th>top channels</th>")
            + "</tr>" + "".join(rows) + "</table>")


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not math.isnan(x)


def _fmt(x: Any) -> str:
    if not _num(x):
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:.3f}"
