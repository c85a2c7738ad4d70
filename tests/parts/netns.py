"""Hosts of their own on this machine, as a Kubernetes cluster gives each pod: network
namespaces (``ip netns``), each with its own loopback and one address on a private bridge, and
an ``/etc/hosts`` of its own (``ip netns exec`` mounts ``/etc/netns/NAME/hosts`` over it).

Root may make them; elsewhere :func:`pods` fails and says why (a test of the topology must
never pass without one).
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

NETNS_ETC = Path("/etc/netns")


@dataclass(frozen=True)
class Pod:
    """One network namespace: its name, its address on the bridge."""

    name: str
    ip: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this pod."""
        return ["ip", "netns", "exec", self.name, *argv]


@dataclass(frozen=True)
class Cluster:
    """The bridge's address on this machine (the outside world the pods reach) and the pods."""

    host_ip: str
    hub: Pod
    users: list[Pod]

    @contextlib.contextmanager
    def loopback_everywhere(self, port: int) -> Iterator[None]:
        """Make ``127.0.0.1:port`` of this machine (a server on its loopback) answer at the same
        address in every pod too, through TCP relays (``tcprelay.py``)."""
        relay = [sys.executable, str(Path(__file__).with_name("tcprelay.py"))]
        commands = [[*relay, self.host_ip, str(port), "127.0.0.1"]]
        commands += [p.command(*relay, "127.0.0.1", str(port), self.host_ip) for p in (self.hub, *self.users)]
        started = []
        try:
            for command in commands:
                proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                started.append(proc)
                line = proc.stdout.readline() if proc.stdout else ""
                assert line.strip() == "ready", f"{command}: {line}{proc.stdout.read() if proc.stdout else ''}"
            yield
        finally:
            for proc in started:
                proc.terminate()
                proc.wait(timeout=30)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=30).stdout
    for _ in range(100):
        net = ipaddress.ip_network(f"10.231.{secrets.randbelow(250) + 1}.0/24")
        if f" {net.network_address + 1}/" not in used:
            return net
    raise RuntimeError("no free 10.231.X.0/24 for the bridge")


@contextlib.contextmanager
def pods(users: int, hosts: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A bridge, a hub pod and ``users`` user pods; in every pod ``hosts`` names resolve
    (``{"hub": <the hub pod's address>}`` by default).

    Fails the test, saying why, where namespaces cannot be made (not root, no ``ip``).
    """
    if shutil.which("ip") is None:
        pytest.fail("this test needs iproute2's `ip` (apt-get install iproute2) to make network namespaces")
    tag = secrets.token_hex(3)
    net = _free_subnet()
    addresses = [str(a) for a in list(net.hosts())[: users + 2]]
    bridge = f"tsbr{tag}"
    names = [f"tshub{tag}", *(f"tsu{i}{tag}" for i in range(users))]
    made: list[str] = []
    try:
        try:
            _ip("link", "add", bridge, "type", "bridge")
            _ip("addr", "add", f"{addresses[0]}/24", "dev", bridge)
            _ip("link", "set", bridge, "up")
            for i, name in enumerate(names):
                _ip("netns", "add", name)
                made.append(name)
                outside, inside = f"tsv{i}{tag}", f"tsp{i}{tag}"
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                _ip("link", "set", outside, "master", bridge)
                _ip("link", "set", outside, "up")
                _ip("link", "set", inside, "netns", name)
                _ip("-n", name, "addr", "add", f"{addresses[i + 1]}/24", "dev", inside)
                _ip("-n", name, "link", "set", inside, "up")
                _ip("-n", name, "link", "set", "lo", "up")
        except (RuntimeError, OSError) as exc:
            pytest.fail(f"network namespaces cannot be made here ({exc}): this test needs root and iproute2")
        cluster = Cluster(
            addresses[0],
            Pod(names[0], addresses[1]),
            [Pod(n, a) for n, a in zip(names[1:], addresses[2:], strict=True)],
        )
        lines = {"localhost": "127.0.0.1", "hub": cluster.hub.ip, **(hosts or {})}
        for name in names:
            (NETNS_ETC / name).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / name / "hosts").write_text("".join(f"{ip} {host}\n" for host, ip in lines.items()))
        yield cluster
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, timeout=30)
