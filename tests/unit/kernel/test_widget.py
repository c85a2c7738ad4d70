"""The sign-in widget's display bundle: the widget's view, and words for wherever it cannot be
drawn (a saved notebook reopened after its kernel stopped, GitHub, nbconvert), with no sign-in
address or secret in them."""

from __future__ import annotations

from ts_notebook.kernel.widget import FALLBACK, LoginWidget
from ts_notebook.protocol import Snapshot

from .test_session import FixedSource
from .test_state import BASE


def test_the_bundle_is_the_widget_view_with_run_this_cell_in_text_and_html():
    widget = LoginWidget(FixedSource(Snapshot(signed_in=False, **BASE)), login_path="/user/ann/ts_notebook/login")
    try:
        bundle, model_id = widget._repr_mimebundle_(), widget.model_id
    finally:
        widget.close()

    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == model_id
    assert bundle["text/plain"] == "Run this cell to sign in to TradeStation." == FALLBACK
    assert bundle["text/html"] == f'<p class="ts-notebook-fallback">{FALLBACK}</p>'
    assert "LoginWidget(" not in str(bundle) and "ts_notebook/login" not in bundle["text/plain"] + bundle["text/html"]
