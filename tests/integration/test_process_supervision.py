"""The real ``lockstep-gateway`` when descriptors run out or a vital thread dies.

Issue 11, finding 1: with ``nofile`` 1024, ~1,017 idle REST connections and two OpenFlow
connects ended the framework's OpenFlow listener (``accept()`` raised EMFILE, unguarded, and
the native hub swallowed it); the process stayed up answering 503 forever, nothing above INFO
in its log.  Here the gateway runs with a small descriptor limit (``preexec_fn`` sets
RLIMIT_NOFILE), its descriptors are exhausted through the REST port and through the OpenFlow
port, and a fake switch (``bench/fakeswitch.py``: OpenFlow 1.3 bytes, HELLO / FEATURES /
port descriptions) must then still get its pipeline; and a vital thread made to fail must end
the process with status 70 and an ERROR line naming it.

No Open vSwitch: loopback only, ephemeral ports.  Like every test that starts
``lockstep-gateway``, run it under ``flock /tmp/lockstep-ovs.lock``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from bench.bench_newflow import deployment
from bench.fakeswitch import FakeSwitch
from lab.ovs import free_port, wait_for
from ryu_app.core.pipeline import PRIORITY_VIP
from ryu_app.shell.launcher import EXIT_THREAD_ENDED

ROOT = Path(__file__).resolve().parents[2]
NOFILE = 256  # the gateway's descriptor limit, soft and hard: it cannot raise it
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Gateway:
    """``lockstep-gateway`` (or ``script``, which runs its launcher) in a subprocess."""

    def __init__(self, workdir: Path, nofile: int | None = None, script: str | None = None):
        self.openflow_port, self.rest_port = free_port(), free_port()
        config = workdir / "deployment.yaml"
        config.write_text(yaml.safe_dump(deployment(self.openflow_port, self.rest_port, workdir)))
        argv = ["--config", str(config), "--gateway", "gw1"]
        if script is None:
            command = [sys.executable, "-m", "ryu_app", *argv]
        else:
            (workdir / "sabotaged.py").write_text(script)
            command = [sys.executable, str(workdir / "sabotaged.py"), *argv]
        self.log = workdir / "gateway.log"

        def limit_descriptors():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                # setrlimit only: it takes no lock another thread of pytest could hold.
                preexec_fn=limit_descriptors if nofile else None,  # noqa: PLW1509
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def status(self, timeout: float = 2.0) -> dict:
        url = f"http://127.0.0.1:{self.rest_port}/v1/status"
        with OPENER.open(url, timeout=timeout) as response:
            assert response.status == 200
            return json.load(response)

    def answers(self) -> bool:
        try:
            return bool(self.status())
        except OSError:
            return False

    def stop(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def gateways(tmp_path):
    started: list[Gateway] = []

    def start(**kwargs) -> Gateway:
        workdir = tmp_path / f"gw{len(started)}"
        workdir.mkdir()
        started.append(Gateway(workdir, **kwargs))
        return started[-1]

    yield start
    for gateway in started:
        gateway.stop()


def open_connections(port: int, count: int, batch: int = 4) -> list[socket.socket]:
    """``count`` TCP connections to ``port`` that say nothing.  Non-blocking, so that those the
    server has no room for wait in its backlog instead of blocking the test; a few at a time,
    so that the server can take each batch off its backlog (50 for the OpenFlow listener, 5 for
    the old REST server) before the next: a connection whose handshake overflowed the backlog
    is left half-open, and takes no descriptor from the server."""
    sockets = []
    while len(sockets) < count:
        for _ in range(min(batch, count - len(sockets))):
            sock = socket.socket()
            sock.setblocking(False)
            code = sock.connect_ex(("127.0.0.1", port))
            assert code in (0, errno.EINPROGRESS), os.strerror(code)
            sockets.append(sock)
        time.sleep(0.02)
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


def descriptors(gateway: Gateway) -> int:
    try:
        return len(os.listdir(f"/proc/{gateway.process.pid}/fd"))
    except OSError:
        return 0


def switch_gets_its_pipeline(gateway: Gateway, timeout: float = 20.0) -> None:
    """A fake switch connects and the controller installs its pipeline (the VIP's punt rule);
    the REST API then says the switch is connected."""
    switch = FakeSwitch.connect(
        ("127.0.0.1", gateway.openflow_port), time.monotonic() + timeout, alive=gateway.alive
    )
    try:
        switch.wait_ready(PRIORITY_VIP, timeout, alive=gateway.alive)
        assert wait_for(lambda: gateway.status()["switch_connected"], 10, "switch_connected")
    finally:
        switch.close()


def test_idle_rest_connections_beyond_the_descriptor_limit_leave_rest_and_openflow_working(
    gateways,
):
    gateway = gateways(nofile=NOFILE)
    wait_for(gateway.answers, 30, "the REST API")
    idle = open_connections(gateway.rest_port, NOFILE + 100)  # more than it could ever hold
    try:
        # REST answers throughout: each fresh request gets a connection (idle ones make room).
        for _ in range(5):
            started = time.monotonic()
            assert gateway.status()["gateway"] == "gw1"
            assert time.monotonic() - started < 2.0
            time.sleep(0.2)
        # ... and the switch's connection, made now, is accepted and served.
        switch_gets_its_pipeline(gateway)
        assert gateway.alive()
    finally:
        close_all(idle)
    text = gateway.text()
    assert "at the cap of" in text  # idle connections were closed to make room
    assert "Traceback" not in text and "ERROR" not in text, text


def test_an_openflow_listener_out_of_descriptors_waits_and_recovers(gateways):
    gateway = gateways(nofile=NOFILE)
    wait_for(gateway.answers, 30, "the REST API")
    hostile = open_connections(gateway.openflow_port, NOFILE + 100)
    try:
        wait_for(
            lambda: descriptors(gateway) >= NOFILE - 1 or not gateway.alive(),
            30,
            "the gateway to run out of descriptors",
        )
        time.sleep(1.0)  # accept() fails for a while
        assert gateway.alive(), gateway.text()
    finally:
        close_all(hostile)
    # Descriptors free again: the listener (which backed off, at most 1 s at a time) takes the
    # switch, and REST answers.
    switch_gets_its_pipeline(gateway)
    wait_for(gateway.answers, 10, "the REST API again")
    assert gateway.alive()
    text = gateway.text()
    assert "OpenFlow listener: accept() failed ([Errno 24] Too many open files)" in text, text
    assert " WARNING lockstep.openflow: " in text
    assert "Traceback" not in text, text


SABOTAGE = {
    "LockstepApp's health ticker": """
        from ryu_app.shell import app
        app.LockstepApp._ticker = broken
    """,
    "LockstepApp's REST server": """
        from ryu_app.api import httpserver
        httpserver.RestServer.serve_forever = broken
    """,
    "ofp_event's OpenFlow listener": """
        from ryu_app.api import accept
        accept.BackoffListener.accept = broken
    """,
}


@pytest.mark.parametrize("thread", sorted(SABOTAGE))
def test_a_vital_thread_that_ends_ends_the_process_with_an_error(gateways, thread):
    script = textwrap.dedent(
        """
        import sys
        from ryu_app.shell import launcher

        def broken(*args, **kwargs):
            raise RuntimeError("sabotaged by the test")

        if __name__ == "__main__":  # the table builder's spawned child imports this file too
        """
    ) + textwrap.indent(textwrap.dedent(SABOTAGE[thread]) + "sys.exit(launcher.main())\n", "    ")
    gateway = gateways(script=script)
    try:
        status = gateway.process.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running with a dead {thread}:\n{gateway.text()}")
    assert status == EXIT_THREAD_ENDED, gateway.text()
    errors = [line for line in gateway.text().splitlines() if " ERROR " in line]
    assert any(f"{thread} ended" in line for line in errors), gateway.text()
    assert "RuntimeError: sabotaged by the test" in gateway.text()  # the cause, logged
