"""Draw the growth chart (SVG, no plotting library needed) from the results of
`bench/growth.sh`: report latency and worker memory against the number of stores, and the
same for a longer history.

    .venv/bin/python bench/plot_growth.py  # writes bench/growth.svg
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
WIDTH, HEIGHT, PAD = 360, 260, 50


def load() -> list[dict[str, Any]]:
    rows = []
    for path in sorted((ROOT / "work").glob("stream-*/result-pack*.json")):
        rows.append(json.loads(path.read_text()))
    return rows


def panel(
    x0: int, title: str, points: dict[str, list[tuple[float, float]]], unit: str
) -> list[str]:
    """One log-log panel; ``points`` maps a series name to (stores, value) pairs."""
    every = [p for series in points.values() for p in series]
    if not every:
        return []
    xs = [math.log10(x) for x, _ in every]
    ys = [math.log10(max(y, 1e-3)) for _, y in every]
    x_lo, x_hi = math.floor(min(xs)), math.ceil(max(xs))
    y_lo, y_hi = math.floor(min(ys)), math.ceil(max(ys))
    x_hi = max(x_hi, x_lo + 1)
    y_hi = max(y_hi, y_lo + 1)

    def sx(v: float) -> float:
        return x0 + PAD + (math.log10(v) - x_lo) / (x_hi - x_lo) * (WIDTH - 1.5 * PAD)

    def sy(v: float) -> float:
        return HEIGHT - PAD - (math.log10(max(v, 1e-3)) - y_lo) / (y_hi - y_lo) * (HEIGHT - 2 * PAD)

    out = [
        f'<text x="{x0 + WIDTH / 2}" y="20" text-anchor="middle" font-weight="bold">{title}</text>',
        f'<line x1="{x0 + PAD}" y1="{HEIGHT - PAD}" x2="{x0 + WIDTH - PAD / 2}" '
        f'y2="{HEIGHT - PAD}" stroke="black"/>',
        f'<line x1="{x0 + PAD}" y1="{PAD}" x2="{x0 + PAD}" y2="{HEIGHT - PAD}" stroke="black"/>',
    ]
    for e in range(x_lo, x_hi + 1):
        out.append(
            f'<text x="{sx(10**e)}" y="{HEIGHT - PAD + 16}" text-anchor="middle">{10**e:,}</text>'
        )
    for e in range(y_lo, y_hi + 1):
        out.append(
            f'<text x="{x0 + PAD - 6}" y="{sy(10**e) + 4}" text-anchor="end">{10**e:g}</text>'
        )
        out.append(
            f'<line x1="{x0 + PAD}" y1="{sy(10**e)}" x2="{x0 + WIDTH - PAD / 2}" '
            f'y2="{sy(10**e)}" stroke="#ddd"/>'
        )
    out.append(
        f'<text x="{x0 + WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">stores ({unit})</text>'
    )
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for n, (name, series) in enumerate(sorted(points.items())):
        series = sorted(series)
        colour = colours[n % len(colours)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}"/>')
        for x, y in series:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
            out.append(f'<text x="{sx(x) + 5:.1f}" y="{sy(y) - 5:.1f}" font-size="10">{y:g}</text>')
        out.append(
            f'<text x="{x0 + PAD + 8}" y="{PAD + 14 * n}" fill="{colour}" font-size="11">{name}</text>'
        )
    return out


PHASES = (("queued", "#999999"), ("read", "#1f77b4"), ("finish", "#ff7f0e"),
          ("render", "#2ca02c"), ("store", "#9467bd"))  # fmt: skip


def split_panel(x0: int, rows: list[dict[str, Any]]) -> list[str]:
    """Stacked bars: where a computed report's time goes (medians), one bar per run."""
    bars = [
        (f"{r['stores']:,} x {r['days']} d", r["split_computed_fresh"])
        for r in sorted(rows, key=lambda r: (r["stores"], r["days"]))
        if r.get("split_computed_fresh", {}).get("read_ms") is not None
    ]
    if not bars:
        return []
    longest = max(sum(split.get(f"{name}_ms", 0.0) for name, _ in PHASES) for _, split in bars)
    scale = (WIDTH - 1.5 * PAD - 40) / longest
    out = [
        f'<text x="{x0 + WIDTH / 2}" y="20" text-anchor="middle" font-weight="bold">'
        "a computed report's time (ms, median)</text>"
    ]
    for i, (label, split) in enumerate(bars):
        y = PAD + i * 34
        out.append(f'<text x="{x0 + 4}" y="{y + 14}" font-size="10">{label}</text>')
        x = x0 + 90.0
        for name, colour in PHASES:
            width = split.get(f"{name}_ms", 0.0) * scale
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="18" fill="{colour}"/>'
            )
            x += width
        total = sum(split.get(f"{name}_ms", 0.0) for name, _ in PHASES)
        out.append(f'<text x="{x + 4:.1f}" y="{y + 14}" font-size="10">{total:,.0f}</text>')
    for n, (name, colour) in enumerate(PHASES):
        out.append(
            f'<text x="{x0 + 90 + 55 * n}" y="{HEIGHT - 12}" fill="{colour}" '
            f'font-size="11">{name}</text>'
        )
    return out


def main() -> None:
    rows = load()
    latency: dict[str, list[tuple[float, float]]] = {}
    memory: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        days = row["days"]
        suffix = "" if days <= 8 else f", {days} days"
        series = [("batch command", row["batch_report_command_median_s"])]
        if "fresh_moment_report_latency_median_s" in row:
            series.append(("report, new moment", row["fresh_moment_report_latency_median_s"]))
            series.append(("report, moment asked before", row["report_latency_median_s"]))
        else:
            series.append(("report", row["report_latency_median_s"]))
        for name, value in series:
            latency.setdefault(name + suffix, []).append((row["stores"], value))
        memory.setdefault("worker" + suffix, []).append((row["stores"], row["worker_peak_rss_mb"]))
    body = panel(0, "trigger -> CSV through the API, median (s)", latency, "log scale")
    body += panel(WIDTH + 20, "worker peak RSS (MB)", memory, "log scale")
    body += split_panel(2 * WIDTH + 40, rows)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{3 * WIDTH + 40}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">'
        '<rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n"
    )
    (ROOT / "growth.svg").write_text(svg)
    print(f"wrote {ROOT / 'growth.svg'} from {len(rows)} runs")


if __name__ == "__main__":
    main()
