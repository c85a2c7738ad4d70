"""The one small HTML page every ts_notebook callback answers with (server, relay, kernel)."""

from __future__ import annotations

import html

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TradeStation sign-in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;
color:#222}}h1{{font-size:1.3em}}.ok{{color:#1a7f37}}.bad{{color:#b42318}}</style></head>
<body><h1 class="{cls}" id="ts-result">{title}</h1><p id="ts-detail">{detail}</p></body></html>
"""


def result_page(title: str, detail: str, ok: bool) -> str:
    """A self-contained page; both strings are escaped here (they may carry provider text)."""
    return PAGE.format(cls="ok" if ok else "bad", title=html.escape(title), detail=html.escape(detail))
