"""The flood scenario's observer: every ``INTERVAL`` seconds, in a thread, what the flooder
offered and the router passed to the flooded gateway (interface counters, read from
``/proc/PID/net/dev`` of their namespaces), what the flooded gateway's uplink received
(``ovs-ofctl dump-ports``) and what its packet socket dropped before the switch read it
(``ss -0 -e -m``), and each gateway's
``/v1/health`` and ``/v1/status`` ``flood_guard`` (with a short timeout: a REST API that does
not answer is itself a finding).  The samples' format is ``overload_summary``'s.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from overload_summary import interface_packets, port_rx_packets, socket_drops
from world import World

INTERVAL = 0.5  # seconds between two samples
REST_TIMEOUT = 2.0  # seconds: a poll that waits longer says "no answer"


class Watch:
    def __init__(self, world: World, flooder, victim, started: float):
        """``started``: the scenario's start (``time.monotonic()``), the samples' zero."""
        self.world, self.started = world, started
        self.offered_at = (Path(f"/proc/{flooder.pid}/net/dev"), f"{flooder.name}-eth0")
        router = world.router
        self.forwarded_at = (Path(f"/proc/{router.pid}/net/dev"), f"{router.name}-{victim.name}")
        # the private OVS's ovs-ofctl (demo.py put its OVS_* variables in the environment)
        self.uplink = victim.gateway.uplink_port
        self.rx_command = ["ovs-ofctl", "-O", "OpenFlow13", "dump-ports", victim.name,
                           self.uplink]  # fmt: skip
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[dict]:
        """Stop sampling (after one last sample); the samples in time order."""
        self._stop.set()
        self._thread.join(2 * REST_TIMEOUT * max(1, len(self.world.routed)) + 5)
        return list(self.samples)

    def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            self.samples.append(self.sample())
            if self._stop.is_set():
                return
            next_at += INTERVAL
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def sample(self) -> dict:
        t = round(time.monotonic() - self.started, 3)
        return {
            "t": t,
            "offered": _packets(*self.offered_at),
            "forwarded": _packets(*self.forwarded_at),
            "uplink_rx": port_rx_packets(_output(self.rx_command)),
            "socket_dropped": socket_drops(_output(["ss", "-0", "-e", "-m"]), self.uplink),
            "gateways": {g.name: self._gateway(g) for g in self.world.routed},
        }

    def _gateway(self, gateway) -> dict:
        view: dict = {"rest_ms": None, "backends": None}
        started = time.monotonic()
        try:
            status, body = self.world.api(gateway, "GET", "/v1/health", timeout=REST_TIMEOUT)
            if status == 200:
                view["rest_ms"] = round((time.monotonic() - started) * 1000, 1)
                view["backends"] = {
                    row["backend"]: {"healthy": bool(row["healthy"]), "since": row.get("since")}
                    for row in body["vips"][self.world.vip.name]
                }
                if "overload" in body:  # the gateway's own verdicts on its load and the VIP
                    view["overloaded"] = bool(body["overload"].get("overloaded"))
                    view["panic"] = bool(body.get("panic", {}).get(self.world.vip.name))
            status, body = self.world.api(gateway, "GET", "/v1/status", timeout=REST_TIMEOUT)
            guard = body.get("flood_guard") if status == 200 else None
            if guard:
                view["dropped_in_switch"] = guard.get("dropped_in_switch")
                view["dropped_in_controller"] = guard.get("dropped_in_controller")
                view["probe_answers_dropped"] = guard.get("probe_answers_dropped")
                view["guard_rate"] = guard.get("rate")
        except (OSError, KeyError, TypeError, AttributeError):
            pass  # no answer, or not one to read: recorded as no answer
        return view


def _output(argv: list[str]) -> str:
    """A command's output; nothing if it did not answer within ``REST_TIMEOUT`` (the switch's
    main thread, which answers ovs-ofctl, reads the flood too)."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=REST_TIMEOUT, check=False
        )
    except (subprocess.TimeoutExpired, OSError):
        return ""
    return done.stdout


def _packets(path: Path, interface: str) -> int | None:
    try:
        return interface_packets(path.read_text(), interface)
    except OSError:
        return None
