"""The sign-in widget: a sign-in link (or button), a sign-out button and a status line.

Its traits hold only display text and the server's login path: widget state is broadcast to
every frontend and can be saved in the notebook, so no token, code, verifier or one-time
address ever goes in. With no server, the sign-in is a button that asks the kernel to open a
fresh one-time address in this machine's browser. The watcher thread updates it; it never
prints or displays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape

from ipywidgets import HTML, Button, HBox, Layout, VBox

from ..errors import TSError
from ..protocol import Snapshot
from .state import TokenSource

BUTTON_STYLE = (
    "display:inline-block;padding:6px 16px;border-radius:4px;background:#1565c0;color:#fff;"
    "font-weight:600;text-decoration:none;font-family:system-ui,sans-serif"
)

# For a browser that cannot reach the loopback callback (Jupyter in Docker, behind an SSH
# tunnel): the address it ended on goes from the browser straight to the server's callback,
# never through the kernel or a widget trait.
PASTE_FORM = (
    '<details class="ts-notebook-paste" style="margin-top:6px"><summary>Browser ended on an error '
    'page after signing in?</summary><form action="{action}" method="get" target="_blank" '
    'style="margin-top:4px"><input name="auth_response" class="ts-notebook-paste-url" size="60" '
    'autocomplete="off" placeholder="Paste the address your browser ended on"> '
    '<button type="submit" class="ts-notebook-paste-submit">Finish sign-in</button></form></details>'
)

# What a notebook shows where the widget cannot be drawn: reopened after its kernel stopped
# (the widget's model is gone), on GitHub or nbviewer, converted to HTML.
FALLBACK = "Run this cell to sign in to TradeStation."


class LoginWidget(VBox):
    """``%ts_login``'s output. Follows the sign-in state live.

    Args:
        source: the kernel's token source.
        login_path: the server's ``ts_notebook/login`` path (same origin as the notebook).
        paste_path: where the "paste the address your browser ended on" form goes (the
            server's callback); None to leave the form out.
        open_sign_in: instead of a link, a button that calls this in the kernel to open the
            sign-in in this machine's browser; it returns what to tell the person when it
            could not, else None.
    """

    def __init__(
        self,
        source: TokenSource,
        login_path: str = "",
        paste_path: str | None = None,
        open_sign_in: Callable[[], str | None] | None = None,
    ) -> None:
        self._source = source
        self.signin: HTML | Button
        if open_sign_in is not None:
            self.signin = Button(description="Sign in to TradeStation", button_style="primary", icon="sign-in")
            self.signin.add_class("ts-notebook-signin")
            self.signin.on_click(lambda _button: self._say(open_sign_in()))
        else:
            self.signin = HTML(
                f'<a class="ts-notebook-signin" href="{escape(login_path)}" target="_blank" '
                f'rel="noopener" style="{BUTTON_STYLE}">Sign in to TradeStation</a>'
                + (PASTE_FORM.format(action=escape(paste_path)) if paste_path else "")
            )
        self.signout = Button(description="Sign out", icon="sign-out", tooltip="Sign out of TradeStation")
        self.signout.add_class("ts-notebook-signout")
        self.signout.on_click(self._sign_out)
        self.status = HTML(layout=Layout(margin="4px 0 0 0"))
        self.status.add_class("ts-notebook-status")
        super().__init__(children=[HBox([self.signin, self.signout]), self.status])
        self.add_class("ts-notebook-login")
        self.show(source.current())
        source.add_listener(self.show)

    def _repr_mimebundle_(self, **kwargs: object) -> dict[str, object]:
        """The widget's view, and :data:`FALLBACK` in place of its raw repr."""
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle.update({"text/plain": FALLBACK, "text/html": f'<p class="ts-notebook-fallback">{FALLBACK}</p>'})
        return bundle

    def show(self, snap: Snapshot) -> None:
        """Render ``snap`` (called from the watcher thread on every change)."""
        self.signin.layout.display = "none" if snap.signed_in else None
        self.signout.layout.display = None if snap.signed_in else "none"
        self.status.value = escape(self.describe(snap))

    @staticmethod
    def describe(snap: Snapshot) -> str:
        """The status line for ``snap``."""
        if snap.signed_in:
            until = time.strftime("%H:%M", time.localtime(snap.expires_at))
            return f"Signed in as {snap.display_name} · token valid until {until}, renewed automatically"
        if not snap.configured:
            return snap.error or "No TradeStation key is configured for this Jupyter server."
        if snap.login_pending:
            return "Waiting for you to sign in on TradeStation's page (opened in a new tab)…"
        if snap.error:
            return f"{snap.error}"
        return "Not signed in. Click the button and sign in on TradeStation's page (it opens in a new tab)."

    def _say(self, message: str | None) -> None:
        if message:
            self.status.value = escape(message)

    def _sign_out(self, _button: Button) -> None:
        try:
            self._source.logout()
        except TSError as exc:
            self.status.value = escape(str(exc))

    def close(self) -> None:
        """Stop following the sign-in state, then close."""
        self._source.remove_listener(self.show)
        super().close()
