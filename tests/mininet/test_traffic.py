"""mininet/traffic.py against mininet/vmserver.py over loopback: no Mininet, no root.

The server runs as its own process (as on a VM); each test runs the traffic tool as the Mininet
runner does and reads its JSON lines.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import traffic  # mininet/ is on sys.path (conftest.py)
import vmserver

SCRIPTS = Path(__file__).resolve().parents[2] / "mininet"
NAME = "vm-test"


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        return sock.getsockname()[1]


def free_source_ports(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive ports that nothing on ``host`` holds, below the
    kernel's ephemeral range so that no other connection picks them meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        first = random.randrange(20000, 30000 - count)
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    stack.enter_context(socket.socket(family)).bind((host, port))
            except OSError:
                continue
        return first
    raise RuntimeError("no free range of source ports")


@contextlib.contextmanager
def vm_server(name: str = NAME):
    """vmserver.py on a free port, listening; killed on the way out whatever its state."""
    port = free_port()
    argv = [sys.executable, str(SCRIPTS / "vmserver.py"), name, "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 5
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "vmserver.py does not listen"
                time.sleep(0.02)
        yield proc, port
    finally:
        if proc.returncode is None:
            proc.kill()  # also ends a stopped process
            proc.communicate()


@pytest.fixture(scope="module")
def server_port():
    with vm_server() as (_, port):
        yield port


def start_traffic(command: str) -> subprocess.Popen:
    """traffic.py with the arguments of ``command`` (as the runner would type them)."""
    argv = [sys.executable, str(SCRIPTS / "traffic.py"), *command.split()]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_traffic(command: str, timeout: float = 20) -> tuple[int, list[dict]]:
    """Run traffic.py to its end: its exit status and its JSON lines."""
    proc = start_traffic(command)
    out, err = proc.communicate(timeout=timeout)
    assert err == ""
    return proc.returncode, [json.loads(line) for line in out.splitlines()]


def pattern(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def test_server_and_client_agree_on_the_pattern_and_its_digest():
    assert vmserver.PATTERN == traffic.PATTERN
    for size in (0, 1, 65536, 3 * 65536 + 1000):
        assert traffic.pattern_sha256(size) == hashlib.sha256(pattern(size)).hexdigest()


def test_connect_binds_the_source_port_and_closes_with_a_reset():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sport = free_source_ports(1)
        args = argparse.Namespace(
            vip="127.0.0.1", port=listener.getsockname()[1], src="127.0.0.1", timeout=2.0
        )
        client = traffic.connect(args, sport)
        server_side, peer = listener.accept()
        with server_side:
            assert peer == ("127.0.0.1", sport)
            client.close()
            with pytest.raises(ConnectionResetError):  # an RST, so no TIME_WAIT on the client
                server_side.recv(1)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_spread_reports_the_serving_vm_for_every_source_port(server_port, address):
    first = free_source_ports(20, address)
    status, lines = run_traffic(
        f"spread --vip {address} --port {server_port} --src {address}"
        f" --first-port {first} --count 20 --parallel 4"
    )
    *connections, summary = lines
    assert status == 0
    assert summary == {"done": True, "ok": 20, "failed": 0}
    assert sorted(c["sport"] for c in connections) == list(range(first, first + 20))
    assert {(c["vm"], c["ok"], c["error"]) for c in connections} == {(NAME, True, None)}
    assert all(c["ms"] >= 0 and c["at"] > 0 for c in connections)


def test_spread_reports_refused_connections_and_fails():
    status, lines = run_traffic(
        f"spread --vip 127.0.0.1 --port {free_port()} --first-port {free_source_ports(3)} --count 3"
    )
    *connections, summary = lines
    assert status == 1
    assert summary == {"done": True, "ok": 0, "failed": 3}
    assert {(c["vm"], c["ok"], c["error"]) for c in connections} == {(None, False, "ECONNREFUSED")}


def test_paced_starts_one_connection_every_interval_whatever_the_others_do(server_port):
    first = free_source_ports(6)
    status, lines = run_traffic(
        f"paced --vip 127.0.0.1 --port {server_port} --src 127.0.0.1 --first-port {first}"
        " --count 6 --every 0.1"
    )
    *connections, summary = lines
    assert status == 0
    assert summary == {"done": True, "ok": 6, "failed": 0}
    assert [c["sport"] for c in sorted(connections, key=lambda c: c["at"])] == list(
        range(first, first + 6)
    )
    starts = sorted(c["at"] for c in connections)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(0.05 <= gap <= 0.3 for gap in gaps), gaps
    assert all(0 <= c["connect_ms"] <= c["ms"] and c["vm"] == NAME for c in connections)


def test_a_paced_connection_that_hangs_does_not_delay_the_next():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        first = free_source_ports(4)
        started = time.monotonic()
        status, lines = run_traffic(
            f"paced --vip 127.0.0.1 --port {silent.getsockname()[1]} --src 127.0.0.1"
            f" --first-port {first} --count 4 --every 0.1 --timeout 1"
        )
        took = time.monotonic() - started
    *connections, summary = lines
    assert status == 1
    assert summary == {"done": True, "ok": 0, "failed": 4}
    assert {c["error"] for c in connections} == {"timeout"}
    assert all(c["connect_ms"] is not None for c in connections)  # connected, then no answer
    starts = sorted(c["at"] for c in connections)
    assert starts[-1] - starts[0] < 0.6  # not one after another's timeout
    assert took < 3.5


def test_download_checks_the_digest(server_port):
    size = 5_000_003
    status, lines = run_traffic(
        f"download --vip 127.0.0.1 --port {server_port} --src 127.0.0.1"
        f" --sport {free_source_ports(1)} --size {size}"
    )
    result = lines[-1]
    assert status == 0
    assert result["ok"] and result["done"] and result["error"] is None and not result["reset"]
    assert result["bytes"] == size
    assert result["sha256"] == result["expected_sha256"]
    assert result["sha256"] == hashlib.sha256(pattern(size)).hexdigest()


def test_throttled_download_lasts_size_over_rate_and_reports_progress(server_port):
    size, rate = 1_000_000, 2_000_000  # half a second
    status, lines = run_traffic(
        f"download --vip 127.0.0.1 --port {server_port} --size {size} --rate {rate}"
        " --label slow --progress 0.1"
    )
    *progress, result = lines
    assert status == 0 and result["ok"] and result["label"] == "slow"
    assert 0.4 <= result["seconds"] <= 2.0
    assert len(progress) >= 2
    assert all(line["label"] == "slow" for line in progress)
    times, received = [line["t"] for line in progress], [line["bytes"] for line in progress]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert received == sorted(received) and 0 < received[-1] < size


def test_parallel_downloads_each_report_and_a_summary(server_port):
    first = free_source_ports(3)
    status, lines = run_traffic(
        f"downloads --vip 127.0.0.1 --port {server_port} --src 127.0.0.1"
        f" --first-sport {first} --count 3 --size 2000000"
    )
    results = [line for line in lines if line.get("done") and "label" in line]
    assert status == 0
    assert lines[-1] == {"done": True, "ok": 3, "failed": 0}
    assert sorted(r["label"] for r in results) == ["dl1", "dl2", "dl3"]
    assert all(r["ok"] and r["bytes"] == 2_000_000 for r in results)


@pytest.mark.parametrize(
    ("fault", "errors"),
    [
        (signal.SIGKILL, {"short read", "ECONNRESET"}),  # what was sent arrives, then the end
        (signal.SIGSTOP, {"timeout"}),  # a stall: nothing for --timeout seconds
    ],
    ids=["killed", "stopped"],
)
def test_a_server_failing_mid_transfer_fails_the_download_without_hanging(fault, errors):
    size, timeout = 300_000_000, 0.5  # ten seconds at the rate below, if nothing failed
    with vm_server() as (server, port):
        client = start_traffic(
            f"download --vip 127.0.0.1 --port {port} --size {size} --rate 30000000"
            f" --progress 0.1 --timeout {timeout}"
        )
        try:
            while json.loads(client.stdout.readline())["bytes"] == 0:
                pass  # until the transfer is under way
            server.send_signal(fault)
            out, err = client.communicate(timeout=5)
        finally:
            if client.poll() is None:
                client.kill()
                client.communicate()
    result = json.loads(out.splitlines()[-1])
    assert client.returncode == 1 and err == ""
    assert result["done"] and not result["ok"]
    assert result["error"] in errors
    assert 0 < result["bytes"] < size
    assert result["sha256"] != result["expected_sha256"]


def test_server_is_quiet_about_resets_and_exits_cleanly_on_sigterm():
    with vm_server() as (server, port):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            answer = b"".join(iter(lambda: sock.recv(4096), b""))
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nok")
        with socket.create_connection(("127.0.0.1", port)) as sock:  # reset mid-answer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(b"GET /bytes/100000000 HTTP/1.0\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.2)  # the server's next write meets the reset
        server.terminate()
        out, err = server.communicate(timeout=5)
        assert (server.returncode, out, err) == (0, "", "")
