"""The benchmark's controller processes: start, stop, and what /proc and their REST API say.

Each controller runs as its own process, started here with its log in a file; CPU time and
memory are read from /proc (Linux), the Lockstep controller's own figures from its REST API.
"""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.fakeswitch import ControllerError

HUBS = ("native", "eventlet")  # os-ken 4.x's hubs; OSKEN_HUB_TYPE picks one at its import
DEFAULT_HUB = "native"  # os-ken's own default


@dataclass
class Controller:
    name: str  # "lockstep_native", "lockstep_eventlet", "reference", "null"
    command: list[str]
    port: int
    ready_priority: int  # the flow-mod that says its pipeline is in
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # on top of this process's environment
    rest_port: int | None = None  # Lockstep's REST API


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(controller: Controller) -> subprocess.Popen:
    with controller.log.open("wb") as log:
        return subprocess.Popen(
            controller.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=controller.log.parent,
            env={**os.environ, **controller.env},
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """Busy CPU seconds of a process (user + system) and of the whole machine, from /proc
    (zeros where there is none)."""
    try:
        process = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        machine = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    # /proc/stat "cpu": user nice system idle iowait irq softirq steal ...
    busy = sum(int(machine[i]) for i in (1, 2, 3, 6, 7, 8))
    return (int(process[11]) + int(process[12])) / ticks, busy / ticks


def parse_rss(text: str) -> int | None:
    """Resident bytes from the text of /proc/PID/smaps_rollup ("Rss:") or /proc/PID/status
    ("VmRSS:"), both in kB; None if neither line is there."""
    for line in text.splitlines():
        label, _, value = line.partition(":")
        if label in ("Rss", "VmRSS"):
            return int(value.split()[0]) * 1024
    return None


def rss_bytes(pid: int) -> int | None:
    """A process's resident memory.  smaps_rollup sums the page tables exactly; the status
    file's VmRSS is the kernel's cached counter (may lag by a few pages per thread)."""
    for name in ("smaps_rollup", "status"):
        try:
            rss = parse_rss(Path(f"/proc/{pid}/{name}").read_text())
        except OSError:
            continue
        if rss is not None:
            return rss
    return None


def log_problems(log: Path, limit: int = 5) -> tuple[int, list[str]]:
    """How many lines of a controller's log say ERROR/Traceback/Exception, and the first few."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    bad = [line for line in lines if any(w in line for w in ("ERROR", "Traceback", "Exception"))]
    return len(bad), bad[:limit]


def failed(controller: Controller, process: subprocess.Popen, error: Exception) -> ControllerError:
    """A run against ``controller`` went wrong: stop it, and say what happened and how its log
    ends."""
    stop(process)
    return ControllerError(f"{controller.name}: {error}; its log ends:{log_tail(controller.log)}")


def log_tail(log: Path, lines: int = 15) -> str:
    tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
    return "".join(f"\n    {line}" for line in tail) or " (empty)"


def rest_get(port: int, path: str, timeout: float = 30.0) -> bytes:
    """GET a path of a controller's REST API on 127.0.0.1 (no proxy: it is local)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return response.read()


def metric(text: str, name: str) -> float | None:
    """The value of an unlabelled sample in Prometheus text (``name value`` on its own line)."""
    text = "\n" + text
    position = text.find(f"\n{name} ")
    if position < 0:
        return None
    end = text.find("\n", position + 1)
    return float(text[position + len(name) + 2 : end if end >= 0 else len(text)])
