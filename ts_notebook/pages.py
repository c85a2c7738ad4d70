"""The one small HTML page every ts_notebook callback answers with (server, relay, kernel)."""

from __future__ import annotations

import html

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TradeStation sign-in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;
color:#222}}h1{{font-size:1.3em}}.ok{{color:#1a7f37}}.bad{{color:#b42318}}.wait{{color:#8a5a00}}</style></head>
<body><h1 class="{cls}" id="ts-result">{title}</h1><p id="ts-detail">{detail}</p></body></html>
"""


def result_page(title: str, detail: str, ok: bool, look_again: str | None = None) -> str:
    """A self-contained page; both strings are escaped here (they may carry provider text).
    With ``look_again`` (an address), the page loads it by itself a second later."""
    refresh = f'\n<meta http-equiv="refresh" content="1;url={html.escape(look_again)}">' if look_again else ""
    cls = "wait" if look_again else "ok" if ok else "bad"
    return PAGE.format(cls=cls, title=html.escape(title), detail=html.escape(detail), refresh=refresh)
