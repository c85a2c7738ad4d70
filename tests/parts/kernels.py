"""Kernels and processes a test drives: a kernel started through a server's kernel manager or
with no server at all (``Kernel``, every iopub message kept), terminal IPython in a
pseudo-terminal, code run over a server's websocket as a frontend runs it, and the
environment a child process starts from.

The kernel client is async: it is used from async tests that share their event loop with the
Jupyter server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pexpect
import requests
from jupyter_client.manager import AsyncKernelManager

PROMPT = r"In \[\d+\]: "


@dataclass
class Result:
    """What one cell produced."""

    stdout: str = ""
    stderr: str = ""
    data: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    traceback: list[str] = field(default_factory=list)  # the error's, as the frontend shows it


class Kernel:
    """A kernel started through the server's kernel manager; every iopub message is kept."""

    def __init__(self, client: Any, kernel_id: str = "") -> None:
        self.client = client
        self.kernel_id = kernel_id
        self.messages: list[dict[str, Any]] = []
        self._pump_task = asyncio.ensure_future(self._pump())

    @classmethod
    async def start(cls, serverapp: Any) -> Kernel:
        kid = await serverapp.kernel_manager.start_kernel()
        client = serverapp.kernel_manager.get_kernel(kid).client()
        client.start_channels()
        await client.wait_for_ready(timeout=60)
        return cls(client, kid)

    async def _pump(self) -> None:
        while True:
            try:
                msg = await self.client.get_iopub_msg(timeout=1)
            except Exception:  # queue.Empty on timeout: keep listening
                continue
            self.messages.append(msg)

    async def run(self, code: str, timeout: float = 60) -> Result:
        """Execute ``code`` and collect its output until the kernel is idle again."""
        msg_id = self.client.execute(code)
        deadline = time.monotonic() + timeout
        seen = 0
        result = Result()
        while time.monotonic() < deadline:
            for msg in self.messages[seen:]:
                seen += 1
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    setattr(result, content["name"], getattr(result, content["name"]) + content["text"])
                elif kind in ("execute_result", "display_data"):
                    result.data.append(content["data"])
                elif kind == "error":
                    result.error = f"{content['ename']}: {content['evalue']}"
                    result.traceback = content["traceback"]
                elif kind == "status" and content["execution_state"] == "idle":
                    return result
            await asyncio.sleep(0.02)
        raise TimeoutError(f"cell did not finish in {timeout}s: {code!r}")

    async def until_heard(self, timeout: float = 60) -> None:
        """After a restart: run an empty cell until its reply reaches us. The restarted kernel
        answers on shell first; IOPub's subscriber reconnects later, and a PUB socket drops
        whatever it sends before then (under load a first cell's output is lost)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.run("", timeout=3)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def widget_texts(self) -> list[str]:
        """Every ``value`` a widget was given, in order (what a frontend would render)."""
        texts = []
        for msg in self.messages:
            if msg["msg_type"] in ("comm_open", "comm_msg"):
                state = msg["content"].get("data", {}).get("state", {})
                if isinstance(state.get("value"), str):
                    texts.append(state["value"])
        return texts

    async def wait_for_widget(self, pattern: str, timeout: float = 20, since: int = 0) -> str:
        """Wait until a widget shows text matching ``pattern`` (among texts from index
        ``since`` on); return that text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in self.widget_texts()[since:]:
                if re.search(pattern, text):
                    return text
            await asyncio.sleep(0.05)
        raise AssertionError(f"no widget showed {pattern!r}; shown: {self.widget_texts()[-5:]}")

    def buttons(self, description: str) -> list[str]:
        """Comm ids of the Button widgets with this description."""
        return [
            m["content"]["comm_id"]
            for m in self.messages
            if m["msg_type"] == "comm_open"
            and m["content"]["data"]["state"].get("_model_name") == "ButtonModel"
            and m["content"]["data"]["state"].get("description") == description
        ]

    def click(self, comm_id: str) -> None:
        """Send the message a frontend sends when a button is clicked."""
        msg = self.client.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}}
        )
        self.client.shell_channel.send(msg)

    def login_link(self) -> str:
        """The sign-in button's href, as the widget state carries it."""
        for text in self.widget_texts():
            m = re.search(r'class="ts-notebook-signin" href="([^"]+)"', text)
            if m:
                return m.group(1)
        raise AssertionError("no sign-in button was shown")

    def transcript(self) -> str:
        """Everything the kernel sent, as text: to search for secrets."""
        return json.dumps([m["content"] for m in self.messages], default=str)

    async def stop(self) -> None:
        self._pump_task.cancel()
        self.client.stop_channels()


async def new_kernel(server: Any, kernels: list[Kernel]) -> Kernel:
    """A kernel of the Jupyter ``server`` (the ``server`` fixture), kept in ``kernels`` (the
    ``kernels`` fixture) to be stopped after the test."""
    k = await Kernel.start(server.app)
    kernels.append(k)
    return k


@contextlib.asynccontextmanager
async def serverless_kernel(env: dict[str, str]) -> AsyncIterator[Kernel]:
    """A kernel started by jupyter_client alone (as VS Code does): no Jupyter server."""
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel(env=env)
    client = km.client()
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    kernel = Kernel(client)
    try:
        yield kernel
    finally:
        await kernel.stop()
        await km.shutdown_kernel(now=True)


def spawn_ipython(env: dict[str, str]) -> pexpect.spawn:
    """``ipython`` in a pseudo-terminal, with the extension loaded."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "IPython", "--no-banner", "--colors=NoColor", "--simple-prompt", "--no-confirm-exit"],
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    child.expect(PROMPT)
    child.sendline("%load_ext ts_notebook")
    child.expect(PROMPT)
    return child


def authorize_url(child: pexpect.spawn) -> str:
    """The sign-in address terminal IPython (``spawn_ipython``) printed after ``%ts_login``."""
    child.expect(r"Sign in to TradeStation in your browser:\s+(http://\S+)")
    return child.match.group(1)


def run_in_kernel(
    http: requests.Session, server_url: str, code: str, ws_base: str | None = None, **ws_options: Any
) -> str:
    """Start a kernel through a server's REST API, run ``code`` over its websocket as a
    frontend does, and return what it printed (an error as ``Name: value``).

    ``http`` carries the server's credentials (its headers go to the websocket too);
    ``ws_base`` is the websocket form of ``server_url`` when it is not just ``ws(s)://``.
    """
    import websocket  # websocket-client, a test dependency

    kernel = http.post(f"{server_url}api/kernels", json={"name": "python3"}, timeout=60).json()
    base = ws_base or server_url.replace("http", "ws", 1)
    headers = [f"{k}: {v}" for k, v in http.headers.items() if k.lower() == "authorization"]
    ws = websocket.create_connection(
        f"{base}api/kernels/{kernel['id']}/channels", header=headers, timeout=60, **ws_options
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": "test",
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "buffers": [],
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                    },
                }
            )
        )
        out = []
        while True:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()
        http.delete(f"{server_url}api/kernels/{kernel['id']}", timeout=60)


def environ_without_settings() -> dict[str, str]:
    """This process's environment without any ts_notebook or JupyterHub variable: what a
    process a test starts gets before the test says what it should have."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TS_", "JUPYTERHUB_"))}
