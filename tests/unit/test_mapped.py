"""Memory given back the moment it is let go: a large reply's body read in mapped pieces, and a
symbol's bars moved into one mapping until placed; small ones left as they are."""

from __future__ import annotations

import mmap
import os

import numpy as np
import requests

from ts_notebook import mapped


def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_large_body_is_read_in_mapped_pieces_that_join_into_it(emulator):
    r = requests.get(f"{emulator.url}/v3/echo", timeout=10, stream=True)
    small = mapped.body(r)
    assert len(small) == 1 and isinstance(small[0], bytes)  # a small body as it came
    assert mapped.joined(small) == requests.get(f"{emulator.url}/v3/echo", timeout=10).content

    class Big:  # a reply of 3.5 pieces, as requests streams it
        data = os.urandom(int(3.5 * mapped.PIECE))
        closed = False

        def iter_content(self, size):
            return (self.data[at : at + size] for at in range(0, len(self.data), size))

        def close(self):
            self.closed = True

    big = Big()
    pieces = mapped.body(big)

    assert big.closed and len(pieces) == 4 and all(isinstance(p, mmap.mmap) for p in pieces)
    assert mapped.joined(pieces) == big.data and all(p.closed for p in pieces)


def test_large_arrays_are_moved_into_one_mapping_given_back_once_let_go():
    n = 4_000_000  # 32 MB a column
    arrays = {"Open": np.arange(n, dtype=np.float64), "Volume": np.arange(n), "Flag": np.ones(n, bool), "Text": ["x"]}

    moved = mapped.moved(arrays)

    assert (
        all(np.array_equal(moved[k], arrays[k]) for k in ("Open", "Volume", "Flag")) and moved["Text"] is arrays["Text"]
    )
    assert all(isinstance(moved[k].base.obj, mmap.mmap) for k in ("Open", "Volume", "Flag"))  # (through a memoryview)
    del arrays
    held = resident()
    del moved
    assert held - resident() > 60 * 2**20  # the mapping is given back at once


def test_small_arrays_stay_as_they_are():
    arrays = {"Open": np.arange(100, dtype=np.float64)}
    assert mapped.moved(arrays)["Open"] is arrays["Open"]
