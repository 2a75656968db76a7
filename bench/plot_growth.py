"""Draw the growth chart (SVG, no plotting library needed) from the results of
`bench/report_latency.py` (``bench/work/report-<stores>x<days>/result.json``): report
latency against the number of stores (computed from the worker's memory, computed from
PostgreSQL, asked again, and the batch command of the same runs), the same at 10,000 stores
with 3 and with 12 days of polls, and where a computed report's time goes.

    .venv/bin/python bench/plot_growth.py  # writes bench/growth.svg
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
WIDTH, HEIGHT, PAD = 380, 280, 50
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
# The pair that shows whether a report grows with history (same stores, 3 vs 12 days).
HISTORY_PAIR = ((10_000, 3), (10_000, 12))


def load() -> list[dict[str, Any]]:
    return [
        json.loads(path.read_text())
        for path in sorted((ROOT / "work").glob("report-*/result.json"))
    ]


def latencies(row: dict[str, Any]) -> dict[str, float]:
    return {
        "computed, from memory": row["index_fresh_median_s"],
        "computed, from PostgreSQL": row["postgresql_fresh_median_s"],
        "asked again, from memory": row["index_default_median_s"],
        "batch command (same run)": row["batch_command_median_s"],
    }


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
    for n, (name, series) in enumerate(points.items()):
        series = sorted(series)
        colour = COLOURS[n % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}"/>')
        for x, y in series:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
            out.append(
                f'<text x="{sx(x) + 5:.1f}" y="{sy(y) - 5:.1f}" font-size="10">{y:.3g}</text>'
            )
        out.append(
            f'<text x="{x0 + PAD + 8}" y="{PAD - 14 + 13 * n}" fill="{colour}" '
            f'font-size="11">{name}</text>'
        )
    return out


def history_panel(x0: int, rows: list[dict[str, Any]]) -> list[str]:
    """Bars: each latency at 10,000 stores with 3 and with 12 days of polls (log seconds)."""
    found = {(r["stores"], r["days"]): latencies(r) for r in rows}
    pair = [(f"{s:,} x {d} days", found[(s, d)]) for s, d in HISTORY_PAIR if (s, d) in found]
    if not pair:
        return []
    names = list(pair[0][1])
    every = [v for _, values in pair for v in values.values()]
    lo = math.floor(math.log10(min(every)))
    hi = max(math.ceil(math.log10(max(every))), lo + 1)

    def height(v: float) -> float:
        return (math.log10(v) - lo) / (hi - lo) * (HEIGHT - 2 * PAD)

    out = [
        f'<text x="{x0 + WIDTH / 2}" y="20" text-anchor="middle" font-weight="bold">'
        "history: 10,000 stores, 3 vs 12 days (s)</text>",
        f'<line x1="{x0 + PAD}" y1="{HEIGHT - PAD}" x2="{x0 + WIDTH - PAD / 2}" '
        f'y2="{HEIGHT - PAD}" stroke="black"/>',
    ]
    for e in range(lo, hi + 1):
        y = HEIGHT - PAD - height(10**e)
        out.append(f'<text x="{x0 + PAD - 6}" y="{y + 4}" text-anchor="end">{10**e:g}</text>')
        out.append(
            f'<line x1="{x0 + PAD}" y1="{y}" x2="{x0 + WIDTH - PAD / 2}" y2="{y}" stroke="#ddd"/>'
        )
    group = (WIDTH - 1.5 * PAD) / len(names)
    bar = group / (len(pair) + 1)
    for i, name in enumerate(names):
        gx = x0 + PAD + i * group + bar / 2
        for j, (_label, values) in enumerate(pair):
            h = height(values[name])
            x = gx + j * bar
            fill = COLOURS[i % len(COLOURS)]
            opacity = "1" if j == 0 else "0.5"
            out.append(
                f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{bar - 2:.1f}" '
                f'height="{h:.1f}" fill="{fill}" fill-opacity="{opacity}"/>'
            )
            out.append(
                f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - PAD - h - 3:.1f}" font-size="9" '
                f'text-anchor="middle">{values[name]:.3g}</text>'
            )
    labels = " / ".join(label for label, _ in pair)
    out.append(
        f'<text x="{x0 + WIDTH / 2}" y="{HEIGHT - 28}" text-anchor="middle" font-size="10">'
        f"each kind: {labels} (paler)</text>"
    )
    out.append(
        f'<text x="{x0 + WIDTH / 2}" y="{HEIGHT - 14}" text-anchor="middle" font-size="10">'
        "same colours as the first panel</text>"
    )
    return out


PHASES = (("queued", "#999999"), ("read", "#1f77b4"), ("finish", "#ff7f0e"),
          ("render", "#2ca02c"), ("store", "#9467bd"), ("api", "#d62728"))  # fmt: skip


def computed_split(row: dict[str, Any]) -> dict[str, float]:
    """A computed report from memory: each phase's median over the runs' medians."""
    runs = [dict(r["index"].get("phases_computed", {})) for r in row["runs_detail"]]
    for r in runs:
        # The job's clock stops when the completing write begins (``finished_at`` is that
        # transaction's start), so the client's time less queue and job holds the store.
        if "api_ms" in r and "store_ms" in r:
            r["api_ms"] -= r["store_ms"]
    out: dict[str, float] = {}
    for name, _ in PHASES:
        values = [r[f"{name}_ms"] for r in runs if f"{name}_ms" in r]
        if values:
            out[name] = statistics.median(values)
    return out


def split_panel(x0: int, rows: list[dict[str, Any]]) -> list[str]:
    """Stacked bars: where a computed report's time goes (ms, medians), one bar per set."""
    bars = [
        (f"{r['stores']:,} x {r['days']} d", split)
        for r in sorted(rows, key=lambda r: (r["stores"], r["days"]))
        if (split := computed_split(r))
    ]
    if not bars:
        return []
    longest = max(sum(split.values()) for _, split in bars)
    scale = (WIDTH - 90 - 40) / longest
    out = [
        f'<text x="{x0 + WIDTH / 2}" y="20" text-anchor="middle" font-weight="bold">'
        "a computed report from memory (ms)</text>"
    ]
    for i, (label, split) in enumerate(bars):
        y = PAD + i * 34
        out.append(f'<text x="{x0 + 4}" y="{y + 14}" font-size="10">{label}</text>')
        x = x0 + 90.0
        for name, colour in PHASES:
            width = max(0.0, split.get(name, 0.0)) * scale
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="18" fill="{colour}"/>'
            )
            x += width
        out.append(
            f'<text x="{x + 4:.1f}" y="{y + 14}" font-size="10">{sum(split.values()):,.0f}</text>'
        )
    for n, (name, colour) in enumerate(PHASES):
        out.append(
            f'<text x="{x0 + 20 + 58 * n}" y="{HEIGHT - 12}" fill="{colour}" '
            f'font-size="11">{name}</text>'
        )
    return out


def main() -> None:
    rows = load()
    by_stores: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if (row["stores"], row["days"]) == HISTORY_PAIR[1]:
            continue  # the longer history has its own panel
        for name, value in latencies(row).items():
            by_stores.setdefault(name, []).append((row["stores"], value))
    body = panel(0, "trigger -> CSV through the API, median (s)", by_stores, "log scale")
    body += history_panel(WIDTH + 20, rows)
    body += split_panel(2 * WIDTH + 40, rows)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{3 * WIDTH + 40}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">'
        '<rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n"
    )
    (ROOT / "growth.svg").write_text(svg)
    print(f"wrote {ROOT / 'growth.svg'} from {len(rows)} sets")


if __name__ == "__main__":
    main()
