"""Real parts for the end-to-end tests: a kernel driven over ZMQ, and a scripted browser.

Both are used from async tests that share their event loop with the Jupyter server, so the
kernel client is async and the browser's blocking requests run in a worker thread.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests


@dataclass
class Result:
    """What one cell produced."""

    stdout: str = ""
    stderr: str = ""
    data: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    traceback: list[str] = field(default_factory=list)  # the error's, as the frontend shows it


def environ_without_settings() -> dict[str, str]:
    """This process's environment without any ts_notebook or JupyterHub variable: what a
    process a test starts gets before the test says what it should have."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TS_", "JUPYTERHUB_"))}


def note_browser(path: Path, opened: Path) -> Path:
    """A system browser as ``webbrowser`` finds it (name it in ``BROWSER``): a program at
    ``path`` that writes down in ``opened`` the address it is asked to open."""
    path.write_text(f"#!{sys.executable}\nimport sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")
    path.chmod(0o700)
    return path


def opened_address(noted: Path) -> str:
    """The address a browser named in ``BROWSER`` (``note_browser``) was sent on to: through
    the private page ts_notebook opens (a ``file://`` URL whose page redirects), or as given."""
    url = noted.read_text().strip()
    if not url.startswith("file://"):
        return url
    page = Path(urlsplit(url).path).read_text()
    return html.unescape(re.search(r'content="0;url=([^"]*)"', page).group(1))


class EchoingRefusal(BaseHTTPRequestHandler):
    """A provider endpoint (token, revoke) that refuses every call, quoting what it was sent,
    as a sloppy or hostile provider (or a debugging proxy before one) does."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        sent = dict(parse_qsl(body))
        quoted = " ".join(f"{k}={v}" for k, v in sent.items() if k not in ("grant_type", "client_id"))
        reply = json.dumps({"error": "invalid_request", "error_description": f"cannot use {quoted}"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """``handler`` served on 127.0.0.1 in a daemon thread; ``shutdown()`` it when done."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


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


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name") and a.get("type") != "submit":
            self.fields[a["name"]] = a.get("value", "")


class Browser:
    """A scripted browser: cookies, redirects followed one by one, forms filled and sent.

    Its calls block, so async tests call them through ``asyncio.to_thread``.
    """

    def __init__(self, server_url: str, token: str) -> None:
        self.server_url = server_url
        self.http = requests.Session()
        self.http.trust_env = False
        self.token = token
        self.visited: list[str] = []
        # Hosts (host:port) this browser cannot reach, like a relay inside a container.
        self.unreachable: set[str] = set()
        self.ended_on: str | None = None

    def sign_in_to_jupyter(self) -> None:
        """Log in to Jupyter with its token, as the login page does, to get its cookie."""
        login = urljoin(self.server_url, "login")
        self.http.get(login, timeout=10)
        xsrf = self.http.cookies.get("_xsrf", "")
        r = self.http.post(login, data={"password": self.token, "_xsrf": xsrf}, timeout=10, allow_redirects=False)
        assert r.status_code == 302, r.text

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET and follow redirects, remembering each URL visited."""
        return self._follow(self.http.get(urljoin(self.server_url, url), allow_redirects=False, timeout=30, **kwargs))

    def _follow(self, r: requests.Response) -> requests.Response:
        self.visited.append(r.url)
        for _ in range(10):
            if r.status_code not in (301, 302, 303, 307):
                return r
            target = urljoin(r.url, r.headers["Location"])
            if urlsplit(target).netloc in self.unreachable:
                self.ended_on = target  # where a real browser would show "cannot connect"
                return r
            r = self.http.get(target, allow_redirects=False, timeout=30)
            self.visited.append(r.url)
        raise AssertionError("too many redirects")

    def submit_login(self, page: requests.Response) -> requests.Response:
        """On Jupyter's login page, enter the token and press Log in (its ?next= is kept)."""
        r = self.http.post(
            page.url,
            data={"password": self.token, "_xsrf": self.http.cookies.get("_xsrf", "")},
            allow_redirects=False,
            timeout=30,
        )
        return self._follow(r)

    def submit(self, page: requests.Response, button: str, **values: str) -> requests.Response:
        """Fill the page's form and press the submit button named ``button`` (its value)."""
        form = _Form()
        form.feed(page.text)
        data = {**form.fields, **values, "decision": button}
        r = self.http.post(urljoin(page.url, form.action), data=data, allow_redirects=False, timeout=30)
        return self._follow(r)

    def sign_in_to_tradestation(
        self, login_link: str, decision: str = "allow", username: str = "analyst"
    ) -> requests.Response:
        """Click the widget's link, then Allow (or Deny) on the sign-in page; return the last page."""
        page = self.get(login_link)
        assert "username" in page.text, page.text[:500]
        return self.submit(page, decision, username=username)


async def eventually(check: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    """Wait for ``check()`` to hold, without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def eventually_sync(check: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    """Wait for ``check()`` to hold (a test with no event loop of its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (servers set SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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


def fails_once(real: Callable[..., Any], error: BaseException) -> Callable[..., Any]:
    """``real``, except that its first call raises ``error``; ``.calls`` counts the calls."""

    def call(*args: Any, **kwargs: Any) -> Any:
        call.calls += 1  # type: ignore[attr-defined]
        if call.calls == 1:  # type: ignore[attr-defined]
            raise error
        return real(*args, **kwargs)

    call.calls = 0  # type: ignore[attr-defined]
    return call


class RechunkingProxy:
    """A loopback HTTP proxy in front of ``upstream`` (``host``, ``port``) that passes requests
    through and re-cuts a chunked reply's body into chunks of random sizes (1 byte and up:
    mid-object, mid-character), as a proxy or load balancer between TradeStation and the
    client may. ``url`` is its address."""

    def __init__(self, upstream: tuple[str, int], seed: int = 0) -> None:
        self.upstream, self.rng = upstream, random.Random(seed)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream) as server:
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            reader = server.makefile("rb")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline()
                if not line:
                    return
                head += line
            try:
                client.sendall(head)
                if b"transfer-encoding: chunked" not in head.lower():
                    while data := reader.read1(65536):
                        client.sendall(data)
                    return
                while True:
                    size = int(reader.readline().split(b";")[0], 16)
                    data = reader.read(size) if size else b""
                    reader.readline()
                    while data:
                        cut = self.rng.randint(1, 9)
                        piece, data = data[:cut], data[cut:]
                        client.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                    if size == 0:
                        client.sendall(b"0\r\n\r\n")
                        return
            except (OSError, ValueError):
                return

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass


class CannedAPI:
    """A hostile or broken API on 127.0.0.1: each GET of a path (query ignored) is answered
    from ``replies[path]`` (status, body bytes), or by ``replies[path](query)`` for replies that
    change. ``url`` is its base; ``asked`` lists (path, query) in order."""

    def __init__(self, replies: dict[str, Any]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs

        canned, asked = replies, []
        self.asked = asked

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                params = {k: v[-1] for k, v in parse_qs(query).items()}
                asked.append((path, params))
                answer = canned.get(path, (404, b'{"Error": "NotFound", "Message": "none"}'))
                status, body = answer(params) if callable(answer) else answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
