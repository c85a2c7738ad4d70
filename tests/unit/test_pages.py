"""The result page every callback answers with escapes what the provider sent."""

from ts_notebook.pages import result_page


def test_the_title_and_detail_are_escaped():
    page = result_page("<b>x</b>", '"><script>alert(1)</script>', ok=False)
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page
    assert 'class="bad"' in page and 'class="ok"' in result_page("Signed in", "", ok=True)
