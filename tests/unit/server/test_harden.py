"""The server holds the client secret in its original environment (/proc/<pid>/environ keeps
it after the extension pops it) and every token in its memory. A kernel is another process of
the same user. Root can read any /proc, so the attack runs under an unprivileged user."""

from __future__ import annotations

import os
import sys

import pytest

from ts_notebook.server import harden

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

NOBODY = 65534


def as_user(uid: int) -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


@pytest.mark.parametrize("hardened", [False, True], ids=["ordinary-process", "non-dumpable-server"])
def test_another_process_of_the_same_user_cannot_read_the_servers_environment(hardened):
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    server = os.fork()
    if server == 0:  # stands in for the server: same user as the kernel below
        try:
            as_user(uid)
            harden._prctl(harden.PR_SET_DUMPABLE, 1)  # as any freshly started program is
            if hardened:
                harden.make_non_dumpable()
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    kernel = os.fork()
    if kernel == 0:  # the "kernel": tries what any code in a notebook could
        code = 99
        try:
            as_user(uid)
            with open(f"/proc/{server}/environ", "rb") as f:
                code = 0 if b"PATH=" in f.read() else 98
        except PermissionError:
            code = 13
        finally:
            os._exit(code)
    _, status = os.waitpid(kernel, 0)
    os.write(done_w, b"1")
    os.waitpid(server, 0)

    assert os.waitstatus_to_exitcode(status) == (13 if hardened else 0)
