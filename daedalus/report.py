"""`daeda pipeline report`: one self-contained HTML page of the data-quality statistics.

It reads the stats sidecars the day jobs wrote (daedalus.quality) and draws them as inline
SVG: rows per day, label rates, point-in-time hit rates, window coverage, embedding hit
rates over time, and a heat map of null rates (feature x day). No script, no external
resource: the page opens anywhere, offline.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daedalus.quality import read_stats

PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d", "#ff9da6", "#bab0ac"]
W, H = 820, 240
ML, MR, MT, MB = 56, 220, 14, 40  # margins: left axis, right legend, top, bottom axis


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


@dataclass
class ReportData:
    service: str
    root: str
    days: list[str]
    skeleton: dict[str, dict[str, Any]]
    enrich: dict[str, dict[str, Any]]

    def series(self, stage: str, key: str) -> dict[str, list[float | None]]:
        """name -> one value per day (None where the day has no statistics or no value)."""
        stats = self.skeleton if stage == "skeleton" else self.enrich
        names: list[str] = []
        for d in self.days:
            for n in stats.get(d, {}).get(key) or {}:
                if n not in names:
                    names.append(n)
        return {n: [(stats.get(d, {}).get(key) or {}).get(n) for d in self.days] for n in names}


def load_report_data(service: str, root: str, days: list[str]) -> ReportData:
    return ReportData(service, root, days, read_stats(root, "skeleton"), read_stats(root, "enrich"))


# -- charts -------------------------------------------------------------------------------


def _x(i: int, n: int) -> float:
    return ML + (W - ML - MR) * (i + 0.5) / max(n, 1)


def _y(v: float, vmax: float) -> float:
    return MT + (H - MT - MB) * (1 - (v / vmax if vmax else 0))


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 or float(v).is_integer() else f"{v:.3g}"


def _axes(days: list[str], vmax: float, percent: bool) -> list[str]:
    out = [f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" stroke="#999"/>']
    for k in range(5):
        v = vmax * k / 4
        y = _y(v, vmax)
        label = f"{v * 100:.0f}%" if percent else _fmt(v)
        out.append(
            f'<line x1="{ML}" y1="{y:.1f}" x2="{W - MR}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{label}</text>'
        )
    step = max(1, -(-len(days) // 10))
    for i, d in enumerate(days):
        if i % step == 0 or i == len(days) - 1:
            out.append(
                f'<text x="{_x(i, len(days)):.1f}" y="{H - MB + 16}" text-anchor="middle" '
                f'class="tick">{_esc(d[5:])}</text>'
            )
    return out


def _svg(body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'role="img" aria-label="{_esc(label)}">' + "".join(body) + "</svg>"
    )


def bar_chart(days: list[str], values: list[float | None], label: str) -> str:
    vmax = max([v for v in values if v is not None] or [0]) or 1
    body = _axes(days, vmax, percent=False)
    bw = (W - ML - MR) / max(len(days), 1) * 0.7
    for i, (d, v) in enumerate(zip(days, values)):
        if v is None:
            continue
        y = _y(v, vmax)
        body.append(
            f'<rect x="{_x(i, len(days)) - bw / 2:.1f}" y="{y:.1f}" width="{bw:.1f}" '
            f'height="{H - MB - y:.1f}" fill="{PALETTE[0]}"><title>{_esc(d)}: {_fmt(v)}</title></rect>'
        )
    return _svg(body, label)


def line_chart(days: list[str], series: dict[str, list[float | None]], label: str, percent: bool = True) -> str:
    vals = [v for s in series.values() for v in s if v is not None]
    vmax = 1.0 if percent else (max(vals or [0]) or 1)
    body = _axes(days, vmax, percent)
    for k, (name, ys) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        path: list[str] = []
        for i, v in enumerate(ys):
            if v is None:  # a gap: a day without statistics
                path.append("")
                continue
            x, y = _x(i, len(days)), _y(v, vmax)
            path.append(f"{x:.1f},{y:.1f}")
            shown = f"{v * 100:.1f}%" if percent else _fmt(v)
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}">'
                f"<title>{_esc(name)} {_esc(days[i])}: {shown}</title></circle>"
            )
        for seg in " ".join(path).split("  "):
            if seg.strip():
                body.append(f'<polyline points="{seg.strip()}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        ly = MT + 4 + k * 16
        body.append(
            f'<rect x="{W - MR + 12}" y="{ly}" width="10" height="10" fill="{color}"/>'
            f'<text x="{W - MR + 27}" y="{ly + 9}" class="legend">{_esc(name)}</text>'
        )
    return _svg(body, label)


def heatmap(days: list[str], series: dict[str, list[float | None]], label: str) -> str:
    """Null rate per feature (rows) and day (columns): white 0%, dark red 100%, grey no data."""
    cell_h, left = 14, 260
    cw = max(4.0, min(40.0, (W - left) / max(len(days), 1)))
    width, height = left + cw * len(days) + 10, 24 + cell_h * len(series) + 4
    body = []
    for r, (name, ys) in enumerate(series.items()):
        y = 20 + r * cell_h
        body.append(f'<text x="{left - 6}" y="{y + 11}" text-anchor="end" class="tick">{_esc(name)}</text>')
        for i, v in enumerate(ys):
            if v is None:
                fill = "#dddddd"
            else:
                shade = int(255 * (1 - v))
                fill = (
                    f"rgb(255,{shade},{shade})" if v < 0.5 else f"rgb({int(255 - 150 * (v - 0.5) * 2)},{shade},{shade})"
                )
            shown = "no data" if v is None else f"{v * 100:.1f}% null"
            body.append(
                f'<rect x="{left + i * cw:.1f}" y="{y}" width="{cw - 1:.1f}" height="{cell_h - 1}" '
                f'fill="{fill}"><title>{_esc(name)} {_esc(days[i])}: {shown}</title></rect>'
            )
    step = max(1, math.ceil(44 / cw))  # day labels at least 44 px apart
    for i, d in enumerate(days):
        if i % step == 0:
            body.append(
                f'<text x="{left + i * cw + cw / 2:.1f}" y="14" text-anchor="middle" class="tick">{_esc(d[5:])}</text>'
            )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" '
        f'viewBox="0 0 {width:.0f} {height}" role="img" aria-label="{_esc(label)}">' + "".join(body) + "</svg>"
    )


# -- the page -----------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 16px; margin: 28px 0 6px; }
.meta { color: #666; font-size: 13px; } .note { color: #8a6d00; font-size: 13px; }
svg { display: block; } svg text { font-size: 11px; fill: #444; } svg .legend { font-size: 12px; fill: #222; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee;
 text-align: right; } th:first-child, td:first-child { text-align: left; }
"""


def _summary_table(data: ReportData) -> str:
    days = [d for d in data.days if d in data.skeleton]
    rows = [data.skeleton[d]["rows"] for d in days]
    total = sum(rows)
    cells = [
        ("days with statistics", f"{len(days)} of {len(data.days)}"),
        ("rows", f"{total:,}"),
        ("rows per day (min / max)", f"{min(rows):,} / {max(rows):,}" if rows else "-"),
    ]
    for name, ys in data.series("skeleton", "label_rate").items():
        weighted = [
            (v, n) for v, n in zip(ys, [data.skeleton.get(d, {}).get("rows", 0) for d in data.days]) if v is not None
        ]
        rate = sum(v * n for v, n in weighted) / max(1, sum(n for _, n in weighted))
        cells.append((f"label rate: {name}", f"{rate * 100:.2f}%"))
    return "<table>" + "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in cells) + "</table>"


def render_html(data: ReportData) -> str:
    days = data.days
    parts = [
        f"<h1>Data quality: {_esc(data.service)}</h1>",
        f'<p class="meta">{_esc(data.root)} | {_esc(days[0])} .. {_esc(days[-1])} | {len(days)} day(s)</p>',
    ]
    missing = [d for d in days if d not in data.skeleton]
    if missing:
        parts.append(
            f'<p class="note">No statistics for {len(missing)} day(s) (first: {_esc(missing[0])}): '
            "they have not been computed yet; run <code>daeda pipeline train</code>.</p>"
        )
    parts.append(_summary_table(data))
    sections: list[tuple[str, str]] = [
        ("Rows per day", bar_chart(days, [data.skeleton.get(d, {}).get("rows") for d in days], "rows per day")),
    ]
    for title, stage, key in [
        ("Label rate", "skeleton", "label_rate"),
        ("Point-in-time join hit rate per view", "skeleton", "pit_hit_rate"),
        ("Window coverage (rows with an event in the window)", "skeleton", "window_coverage"),
        ("Embedding hit rate (rows with at least one vector found)", "enrich", "embedding_hit_rate"),
    ]:
        s = data.series(stage, key)
        if s:
            sections.append((title, line_chart(days, s, title)))
    nulls = data.series("skeleton", "null_rate")
    if nulls:
        sections.append(("Null rate per feature and day", heatmap(days, nulls, "null rates")))
    for title, svg in sections:
        parts.append(f"<h2>{_esc(title)}</h2>{svg}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Daedalus data quality: {_esc(data.service)}</title>"
        '<link rel="icon" href="data:,">'  # no favicon request (and no 404 in the console)
        f"<style>{_CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )


def default_report_path(root: str) -> Path:
    return Path(root) / ".daedalus" / "report.html"
