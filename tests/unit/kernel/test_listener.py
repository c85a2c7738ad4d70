"""The in-process callback listener's own parts (the attacks on it are in test_local_security)."""

from ts_notebook.kernel.listener import cookie_value


def test_a_cookie_is_found_among_others_even_odd_ones():
    header = 'other={"json": "value"}; ts_notebook_31022=abc; last="quoted"'
    assert cookie_value(header, "ts_notebook_31022") == "abc"
    assert cookie_value(header, "last") == "quoted"
    assert cookie_value(header, "ts_notebook_3000") is None
    assert cookie_value("flag; ts=1", "flag") is None  # a bare name carries no value
