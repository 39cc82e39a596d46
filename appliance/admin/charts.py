"""Small charts as inline SVG, drawn on the server: no chart library, no script.

- `bars`: one value per label (calls per day);
- `lines`: one or more series over labels (turn latency median and p95 per day);
- `stacked`: one horizontal bar per turn, split by stage (where a turn's latency went).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .html import Markup, join, t

PALETTE = ("#98a2b3", "#7a5af8", "#2f6fde", "#53b1fd", "#12b76a", "#f79009", "#f04438")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str


def _nice_max(value: float) -> float:
    """The axis top: 4 ticks of 1, 2, 2.5 or 5 x 10^k, at least the value (counts: whole)."""
    if value <= 0:
        return 4.0
    raw = value / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return max(4.0, step * 4) if value >= 1 else step * 4


def _legend(items: Sequence[tuple[str, str]]) -> Markup:
    return t('<div class="legend">{x}</div>', x=join(
        t('<span><i style="background:{c}"></i>{n}</span>', c=c, n=n) for n, c in items))


def _frame(svg_body: Markup, width: int, height: int, label: str) -> Markup:
    return t('<svg viewBox="0 0 {w} {h}" width="{w}" role="img" '
             'aria-label="{label}" xmlns="http://www.w3.org/2000/svg" '
             'font-family="system-ui,sans-serif" font-size="11">{b}</svg>',
             w=width, h=height, label=label, b=svg_body)


def _axis(top: float, left: int, right: int, base: int, height: int, unit: str) -> Markup:
    ticks = []
    for i in range(5):
        value = top * i / 4
        y = base - height * i / 4
        ticks.append(t('<line x1="{l}" x2="{r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7ec"/>'
                       '<text x="{tx}" y="{ty:.1f}" text-anchor="end" fill="#667085">{v}</text>',
                       l=left, r=right, y=y, tx=left - 4, ty=y + 4,
                       v=f"{value:g}{unit}"))
    return join(ticks)


def _x_labels(labels: Sequence[str], left: int, step: float, base: int) -> Markup:
    every = max(1, math.ceil(46 / step)) if step > 0 else 1     # a label needs ~46 px
    return join(t('<text x="{x:.1f}" y="{y}" text-anchor="middle" fill="#667085">{s}</text>',
                  x=left + step * (i + 0.5), y=base + 14, s=label)
                for i, label in enumerate(labels) if i % every == 0)


def bars(labels: Sequence[str], values: Sequence[float], *, title: str, unit: str = "",
         color: str = "#2f6fde", width: int = 480, height: int = 180) -> Markup:
    left, top_pad, base = 44, 10, height - 22
    plot_h, plot_w = base - top_pad, width - left - 8
    top = _nice_max(max(values, default=0))
    step = plot_w / max(1, len(values))
    rects = join(t('<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{c}">'
                   '<title>{lab}: {v}</title></rect>',
                   x=left + step * i + step * 0.15, w=step * 0.7, h=plot_h * v / top,
                   y=base - plot_h * v / top, c=color, lab=labels[i], v=f"{v:g}")
                 for i, v in enumerate(values))
    body = join([_axis(top, left, width - 8, base, plot_h, unit), rects,
                 _x_labels(labels, left, step, base)])
    return t('<div class="chart">{svg}</div>', svg=_frame(body, width, height, title))


def lines(labels: Sequence[str], series: Sequence[Series], *, title: str, unit: str = "",
          width: int = 480, height: int = 180) -> Markup:
    left, top_pad, base = 52, 10, height - 22
    plot_h, plot_w = base - top_pad, width - left - 8
    top = _nice_max(max((v for s in series for v in s.values if v is not None), default=0))
    step = plot_w / max(1, len(labels))
    drawn = []
    for s in series:
        points = [(left + step * (i + 0.5), base - plot_h * v / top)
                  for i, v in enumerate(s.values) if v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        drawn.append(t('<polyline points="{p}" fill="none" stroke="{c}" stroke-width="2"/>',
                       p=path, c=s.color))
        drawn.extend(t('<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{c}"/>', x=x, y=y,
                       c=s.color) for x, y in points)
    body = join([_axis(top, left, width - 8, base, plot_h, unit), join(drawn),
                 _x_labels(labels, left, step, base)])
    return t('{legend}<div class="chart">{svg}</div>',
             legend=_legend([(s.name, s.color) for s in series]),
             svg=_frame(body, width, height, title))


def stacked(rows: Sequence[tuple[str, Sequence[float | None]]], stages: Sequence[str], *,
            title: str, width: int = 640, bar_h: int = 18) -> Markup:
    """One bar per row (label, one value per stage in ms); None / negative draw nothing."""
    left, gap = 64, 8
    height = len(rows) * (bar_h + gap) + 24
    top = _nice_max(max((sum(max(0.0, v or 0) for v in vals) for _, vals in rows), default=0))
    plot_w = width - left - 60
    parts = []
    for i, (label, values) in enumerate(rows):
        y, x = 4 + i * (bar_h + gap), float(left)
        parts.append(t('<text x="{tx}" y="{ty}" text-anchor="end" fill="#667085">{s}</text>',
                       tx=left - 6, ty=y + bar_h - 5, s=label))
        for stage, (name, value) in enumerate(zip(stages, values)):
            w = plot_w * max(0.0, value or 0) / top
            if w <= 0:
                continue
            parts.append(t('<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{h}" '
                           'fill="{c}" class="stage"><title>{n}: {v:.0f} ms</title></rect>',
                           x=x, y=y, w=w, h=bar_h, c=PALETTE[stage % len(PALETTE)], n=name,
                           v=value))
            x += w
        total = sum(max(0.0, v or 0) for v in values)
        parts.append(t('<text x="{x:.1f}" y="{y}" fill="#1d2330">{v:.0f} ms</text>',
                       x=x + 4, y=y + bar_h - 5, v=total))
    parts.append(t('<text x="{x}" y="{y}" fill="#667085">scale: {m:.0f} ms full width</text>',
                   x=left, y=height - 6, m=top))
    legend = _legend([(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(stages)])
    return t('{legend}<div class="chart">{svg}</div>', legend=legend,
             svg=_frame(join(parts), width, height, title))
