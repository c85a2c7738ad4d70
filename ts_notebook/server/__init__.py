"""The jupyter-server side of ts_notebook: the token broker and its HTTP handlers."""
