"""Whether this kernel has a frontend that shows widgets, and showing one there."""

from __future__ import annotations


def has_frontend() -> bool:
    """True in a notebook (a kernel with a frontend), False in terminal IPython."""
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def display(widget: object) -> None:
    """Show ``widget`` in the cell that is running."""
    from IPython.display import display as show

    show(widget)
