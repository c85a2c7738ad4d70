"""Memory the process gives back the moment it is let go.

What a thread frees, the C library keeps for that thread to use again: a download whose eight
workers each held a 17 MB reply at some point keeps 8 x 17 MB, and a symbol's bars freed as they
are placed into the frame ``ts.download`` returns stay with the process while the frame is made
beside them (at its peak, two copies of the bars). Memory mapped for one use (anonymous
``mmap``) goes back to the system when its last user lets it go, so a reply's body is read into
such pieces, and a symbol's bars wait in one until placed.
"""

from __future__ import annotations

import mmap
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

# A reply's body is read this much at a time (what a worker's own memory holds at once).
PIECE = 1 << 20


def body(resp: requests.Response) -> list[Any]:
    """The body of a reply asked for with ``stream=True`` (decoded, as requests decodes it), in
    pieces, mapped once it is large (a small one as it came: mapping costs more than it saves);
    the reply is closed. ``joined(pieces)`` is the body."""
    pieces: list[Any] = []
    try:
        for chunk in resp.iter_content(PIECE):
            if len(chunk) < PIECE and not pieces:  # the whole of a small body
                pieces.append(chunk)
            elif chunk:
                piece = mmap.mmap(-1, len(chunk))
                piece.write(chunk)
                pieces.append(piece)
    finally:
        resp.close()
    return pieces


def joined(pieces: list[Any]) -> bytes:
    """The pieces as one, each let go."""
    if len(pieces) == 1 and isinstance(pieces[0], bytes):
        return pieces[0]
    whole = b"".join(pieces)
    for piece in pieces:
        if isinstance(piece, mmap.mmap):
            piece.close()
    return whole


def moved(arrays: dict[str, Any]) -> dict[str, Any]:
    """``arrays`` (numpy arrays of one length) copied into one mapping, given back when the last
    of them is let go, once they are large (small ones as they are: mapping costs more than it
    saves); other values (text) as they are."""
    import numpy as np

    numbers = {name: a for name, a in arrays.items() if isinstance(a, np.ndarray) and a.dtype.kind in "iufb"}
    numbers = dict(sorted(numbers.items(), key=lambda item: -item[1].itemsize))  # (each one aligned)
    size = sum(a.nbytes for a in numbers.values())
    if size < PIECE:
        return dict(arrays)
    room = mmap.mmap(-1, size)
    moved, at = dict(arrays), 0
    for name, values in numbers.items():
        copy = np.frombuffer(room, values.dtype, len(values), at)
        copy[:] = values
        moved[name] = copy
        at += values.nbytes
    return moved
