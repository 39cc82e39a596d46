"""A tiny HTML templating helper: values are escaped unless they are already `Markup`.

    t("<td>{name}</td><td>{n}</td>", name=row["name"], n=3)   -> Markup, name escaped
    join(t("<li>{x}</li>", x=x) for x in items)               -> Markup

No template language: pages are Python functions returning Markup, so a value can never reach
the page unescaped by accident (only `Markup(...)` marks trusted text).
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ..logs import mask_phone


class Markup(str):
    """Text that is already HTML."""


class _Formatter(string.Formatter):
    def format_field(self, value: object, format_spec: str) -> str:
        if isinstance(value, Markup):
            return value
        if value is None:
            return ""
        return html.escape(format(value, format_spec), quote=True)


_FMT = _Formatter()


def t(template: str, /, **values: object) -> Markup:
    return Markup(_FMT.vformat(template, (), values))


def esc(value: object) -> Markup:
    return value if isinstance(value, Markup) else Markup(html.escape(
        "" if value is None else str(value), quote=True))


def join(parts: Iterable[str], sep: str = "") -> Markup:
    return Markup(sep.join(esc(p) for p in parts))


def table(headers: Iterable[str], rows: Iterable[Iterable[object]], empty: str = "Nothing yet."
          ) -> Markup:
    """A scrollable table; each cell escaped unless Markup."""
    body = join(t("<tr>{cells}</tr>", cells=join(_cell(c) for c in row)) for row in rows)
    if not body:
        return t('<p class="empty">{e}</p>', e=empty)
    head = join(t("<th>{h}</th>", h=h) for h in headers)
    return t('<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
             '</table></div>', head=head, body=body)


def _cell(value: object) -> Markup:
    """Short values stay on one line (times, numbers); long text wraps."""
    text = value if isinstance(value, str) else str(value if value is not None else "")
    plain = html.unescape(text) if isinstance(value, Markup) else text
    wrap = len(plain) > 20 and "<form" not in text
    return t('<td class="wrap">{c}</td>' if wrap else "<td>{c}</td>", c=value)


def csrf_field(token: str) -> Markup:
    return t('<input type="hidden" name="csrf" value="{v}">', v=token)


def badge(text: str, kind: str = "") -> Markup:
    return t('<span class="badge {k}">{x}</span>', k=kind, x=text)


def kv(pairs: Mapping[str, object] | Iterable[tuple[str, object]]) -> Markup:
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return t("<dl class=\"kv\">{x}</dl>",
             x=join(t("<dt>{k}</dt><dd>{v}</dd>", k=k, v=v) for k, v in items))


# -- times and people ------------------------------------------------------------------------

def parse_utc(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local_time(stamp: str | None, tz: ZoneInfo, fmt: str = "%d %b %H:%M") -> str:
    moment = parse_utc(stamp)
    return moment.astimezone(tz).strftime(fmt) if moment else ""


def duration(start: str | None, end: str | None) -> str:
    a, b = parse_utc(start), parse_utc(end)
    if a is None or b is None:
        return ""
    seconds = max(0, int((b - a).total_seconds()))
    return f"{seconds // 60}:{seconds % 60:02d}"


def who(name: str | None, phone: str | None) -> str:
    masked = mask_phone(phone) if phone else "unknown number"
    return f"{name} ({masked})" if name else masked


def ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} ms"
