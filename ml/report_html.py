"""The daily report's page: what one section holds, and the self-contained HTML that shows them.

The page has no script and no external resource (charts are base64 PNGs, the style is inline),
so it can be mailed or opened from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from PIL import Image

# Split only to keep the source lines short: the joined text is the page's stylesheet, unchanged.
STYLESHEET = (
    "\n"
    + "\n".join(
        (
            'body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;'
            "background:#f5f6f8;color:#1d2329}",
            "header{background:#1d3557;color:#fff;padding:16px 28px}",
            "header h1{margin:0 0 8px;font-size:22px}",
            "header table{border-collapse:collapse;font-size:14px}",
            "header td{padding:2px 18px 2px 0;vertical-align:top}",
            "header td:first-child{color:#a8c5e6;white-space:nowrap}",
            "nav{padding:10px 28px;font-size:13px}",
            "nav a{margin-right:14px;color:#1d3557}",
            ".status-missing,.status-error{color:#b5651d}",
            "main{display:flex;flex-wrap:wrap;gap:18px;padding:0 28px 28px}",
            "section{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.12);"
            "padding:14px 18px;flex:1 1 760px;max-width:1000px}",
            "section h2{font-size:16px;margin:0 0 10px}",
            "section img{max-width:100%;height:auto;display:block}",
            ".caption{font-size:13px;color:#4a5560;margin:8px 0 0}",
            ".facts{border-collapse:collapse;font-size:13px;margin-top:8px}",
            ".facts td{padding:2px 14px 2px 0;border-bottom:1px solid #eef0f2}",
            ".notice{padding:18px;border:1px dashed #c0a060;background:#fffaf0;"
            "border-radius:4px;font-size:14px}",
            ".notice.error{border-color:#d62828;background:#fff2f2}",
            "footer{padding:0 28px 24px;font-size:12px;color:#6b7680}",
        )
    )
    + "\n"
)


@dataclass
class Panel:
    """One section of the report: a chart, or the reason there is none."""

    key: str
    title: str
    png: bytes | None = None
    caption: str = ""
    rows: list[tuple[str, str]] = field(default_factory=list)
    missing: str | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if self.missing:
            return "missing"
        return "ok"


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``a.b.c -> value`` (lists shortened), so any JSON report fits a two-column table."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        out[prefix.rstrip(".")] = ", ".join(map(str, d[:8])) + (" …" if len(d) > 8 else "")
    else:
        out[prefix.rstrip(".")] = d
    return out


def format_value(v: Any) -> str:
    """A value as a table cell: thousands separators, four significant digits, JSON-style booleans."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if math.isfinite(v) else str(v)
    return str(v)


def _facts(rows: list[tuple[str, str]], cls: str = "facts") -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _section(p: Panel) -> str:
    parts = [f'<section id="{p.key}" data-status="{p.status}"><h2>{html.escape(p.title)}</h2>']
    if p.png:
        # the image's size in the tag lets the browser lay the page out before decoding it
        width, height = Image.open(io.BytesIO(p.png)).size
        data = base64.b64encode(p.png).decode("ascii")
        parts.append(
            f'<img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{html.escape(p.title)}">'
        )
    elif p.status == "missing":
        parts.append(f'<div class="notice">Not available: {html.escape(p.missing or "")}</div>')
    elif p.status == "error":
        parts.append(f'<div class="notice error">Could not be drawn: {html.escape(p.error or "")}</div>')
    if p.caption:
        parts.append(f'<p class="caption">{html.escape(p.caption)}</p>')
    parts.append(_facts(p.rows))
    parts.append("</section>")
    return "".join(parts)


def render_html(d: date, header: list[tuple[str, str]], panels: list[Panel], created_at: str) -> str:
    """The report page (no script, no external resource)."""
    nav = " ".join(
        f'<a href="#{p.key}" class="status-{p.status}">{html.escape(p.title.split(":")[0].split(" (")[0])}'
        f"{'' if p.status == 'ok' else ' (' + p.status + ')'}</a>"
        for p in panels
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>contactrank report {d.isoformat()}</title><style>{STYLESHEET}</style></head><body>"
        f"<header><h1>contactrank daily report — {d.isoformat()}</h1>{_facts(header, 'summary')}</header>"
        f"<nav>{nav}</nav><main>{''.join(_section(p) for p in panels)}</main>"
        f"<footer>Generated {html.escape(created_at)} by contactrank.</footer></body></html>\n"
    )
