"""``python -m ts_notebook``: see :mod:`ts_notebook.launch`."""

from .launch import main

raise SystemExit(main())
