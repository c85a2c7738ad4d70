"""The IPython side of ts_notebook: magics, widget, session and the broker client."""
