"""The HTML the emulator shows a browser: the sign-in form and error pages."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

SIGN_IN_TITLE = "Sign in · TradeStation emulator"
ERROR_TITLE = "Error · TradeStation emulator"

_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}"
    "main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;"
    "box-shadow:0 1px 4px #0002}"
    "label,input{display:block;width:100%;box-sizing:border-box;margin:.3rem 0}"
    "input{padding:.5rem}button{margin:.8rem .5rem 0 0;padding:.5rem 1.2rem}"
    ".message{color:#a00}code{word-break:break-all}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def sign_in_page(params: Mapping[str, str], username: str = "analyst", message: str | None = None) -> str:
    """The consent form: every /authorize parameter travels back as a hidden input.

    Args:
        params: The /authorize parameters, echoed (escaped) as hidden inputs.
        username: The value pre-filled in the username box.
        message: A problem to show above the form, e.g. an empty username.
    """
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">' for name, value in params.items()
    )
    notice = f'<p class="message" role="alert">{escape(message)}</p>' if message else ""
    body = (
        "<h1>TradeStation emulator</h1>"
        "<p>A local stand-in for TradeStation's sign-in: no password, no real account.</p>"
        f"<p>Application <code>{escape(params.get('client_id', ''))}</code> asks for "
        f"<code>{escape(params.get('scope', ''))}</code>.</p>"
        f"{notice}"
        '<form method="post" action="/authorize">'
        f"{hidden}"
        '<label for="username">Username</label>'
        f'<input type="text" id="username" name="username" value="{escape(username)}" autocomplete="username">'
        '<button type="submit" id="allow" name="decision" value="allow">Allow</button>'
        '<button type="submit" id="deny" name="decision" value="deny">Deny</button>'
        "</form>"
    )
    return _page(SIGN_IN_TITLE, body)


def error_page(message: str) -> str:
    """A short error page naming the problem; it never redirects."""
    return _page(ERROR_TITLE, f"<h1>Sign-in error</h1><p>{escape(message)}</p>")
