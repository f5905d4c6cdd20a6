"""What ``bench/bench_flood.py`` watches while a step runs: the gateway's REST API (a poller
thread: ``GET /v1/status`` every 0.1 s for latency, ``GET /v1/health`` every 0.5 s for the
backends' states), and the counters it reads at each end of a step: the controller's
(``GET /metrics``), Open vSwitch's (``coverage/show``, ``dpctl/show``'s lost upcalls, meter
statistics, the uplink port's receive counters), the router's and the flooder's interfaces, and
the new lines of the controller's and OVS's logs.  The parsers are pure: tested on canned text.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.ovscounters import (
    FLOW_RULES,
    link_counters,
    parse_coverage,
    parse_metrics,
    parse_upcall_show,
)
from bench.ovslab import Gateway
from lab.ovs import sh

# OVS coverage counters kept per step (deltas): where packets to the controller are dropped.
DROP_COVERAGE = (
    "packet_in_overflow",  # ofproto-dpif's queue of packet-ins for the main thread full
    "rconn_overflow",  # the controller connection's packet-in backlog full
    "upcall_flow_limit_hit",
    "datapath_drop_meter",  # a meter band dropped a packet in the datapath
    "datapath_drop_upcall_error",
    "drop_action_of_pipeline",
)
# Log lines that count as events (word in the line -> event).
CONTROLLER_EVENTS = {"is DOWN": "down", "is UP": "up", "disconnected": "disconnect"}
OVS_EVENTS = {
    "disconnecting": "disconnect",  # "no response to inactivity probe ..., disconnecting"
    "connection dropped": "disconnect",
    "connection closed by peer": "disconnect",
}
REST_EVERY, HEALTH_EVERY = 0.1, 0.5  # seconds


# ---- the REST poller ----------------------------------------------------------------------------


@dataclass
class Poll:
    at: float  # Unix time the request was sent
    path: str
    ms: float | None  # None: it failed
    states: dict[str, bool] | None = None  # /v1/health: backend -> healthy


def health_states(body: dict) -> dict[str, bool]:
    """``GET /v1/health``'s body -> {"vip/backend": healthy} over every VIP."""
    return {
        f"{vip}/{row['backend']}": bool(row["healthy"])
        for vip, rows in body.get("vips", {}).items()
        for row in rows
    }


class Poller(threading.Thread):
    """GETs the REST API on a schedule until stopped; ``polls`` holds every answer, in order."""

    def __init__(self, rest_port: int, timeout: float = 5.0):
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{rest_port}"
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.polls: list[Poll] = []
        self.done = threading.Event()

    def get(self, path: str) -> Poll:
        at, started = time.time(), time.monotonic()
        try:
            with self.opener.open(self.base + path, timeout=self.timeout) as reply:
                body = reply.read()
        except OSError:
            return Poll(at, path, None)
        ms = (time.monotonic() - started) * 1000
        states = health_states(json.loads(body)) if path == "/v1/health" else None
        return Poll(at, path, ms, states)

    def run(self) -> None:
        next_health = time.monotonic()
        while not self.done.is_set():
            started = time.monotonic()
            self.polls.append(self.get("/v1/status"))
            if started >= next_health:
                self.polls.append(self.get("/v1/health"))
                next_health += HEALTH_EVERY
            self.done.wait(max(0.0, REST_EVERY - (time.monotonic() - started)))

    def stop(self) -> list[Poll]:
        self.done.set()
        self.join()
        return self.polls

    def all_up(self) -> bool | None:
        """Whether the latest health answer shows every backend healthy (None: none yet)."""
        for poll in reversed(self.polls):
            if poll.states is not None:
                return all(poll.states.values())
        return None


# ---- counters at each end of a step -------------------------------------------------------------


def parse_dpctl_lost(text: str) -> int:
    """``dpctl/show``: upcalls the datapath lost (``lookups: hit:H missed:M lost:L``)."""
    return sum(int(found) for found in re.findall(r"\blost:(\d+)", text))


def parse_meter_stats(text: str) -> dict[int, dict[str, int]]:
    """``ovs-ofctl -O OpenFlow13 meter-stats``: {meter id: {"packets_in": packets that
    reached the meter, "dropped": packets its bands dropped}}."""
    meters: dict[int, dict[str, int]] = {}
    current = None
    for line in text.splitlines():
        head = re.search(r"meter[:=](\d+).*?packet_in_count[:=](\d+)", line)
        if head:
            current = meters[int(head[1])] = {"packets_in": int(head[2]), "dropped": 0}
        if current is not None:
            rest = line[head.end() :] if head else line
            for band in re.findall(r"\bpacket_count[:=](\d+)", rest):
                current["dropped"] += int(band)
    return meters


def parse_port_rx(text: str) -> int:
    """``ovs-ofctl dump-ports BRIDGE PORT``: packets the port received."""
    found = re.search(r"rx pkts=(\d+)", text)
    return int(found[1]) if found else 0


def parse_socket_drops(text: str, interface: str) -> int:
    """``ss -0 -e -m`` (packet sockets): packets the kernel dropped because the sockets bound
    to ``interface`` were full (``skmem:(...,d<N>)``).  OVS's userspace datapath reads a
    ``system`` port through such a socket: these are the packets it never read."""
    drops, ours = 0, False
    for line in text.splitlines():
        if not line[:1].isspace():  # a socket's first line: ... *:IFACE ...
            ours = f":{interface} " in f"{line} "
        found = re.search(r"skmem:\(.*\bd(\d+)\)", line)
        if ours and found:
            drops += int(found[1])
    return drops


def parse_pin_sources(text: str) -> dict[str, int]:
    """``ovs-ofctl dump-flows`` of the per-flow rules (pins): {client source address: rules}."""
    sources: dict[str, int] = {}
    for found in re.finditer(r"\bnw_src=([0-9.]+)", text):
        sources[found[1]] = sources.get(found[1], 0) + 1
    return sources


@dataclass
class LogCursor:
    """Reads only what a log gained since the last read."""

    path: Path
    offset: int = 0

    def new_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        return data.decode(errors="replace").splitlines()


def count_events(lines: list[str], words: dict[str, str]) -> dict[str, int]:
    counts = dict.fromkeys(words.values(), 0)
    for line in lines:
        for word, event in words.items():
            if word in line:
                counts[event] += 1
    return counts


@dataclass
class Watch:
    """The counters and log cursors of one lab."""

    gw: Gateway
    flood_ns: str
    flood_if: str
    router_uplink: str  # the router's end of the gateway's uplink (router namespace)
    router_ns: str
    controller_log: LogCursor = field(init=False)
    ovs_log: LogCursor = field(init=False)

    def __post_init__(self) -> None:
        self.controller_log = LogCursor(self.gw.log)
        self.ovs_log = LogCursor(self.gw.lab.ovs.rundir / "ovs-vswitchd.log")
        self.controller_log.new_lines()
        self.ovs_log.new_lines()

    def offered(self) -> int:
        flooder = link_counters(self.flood_if, self.flood_ns)
        return flooder["tx"] + flooder["tx_dropped"]

    def snapshot(self) -> dict:
        """Every counter a step compares, now."""
        ovs, gw = self.gw.lab.ovs, self.gw
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{gw.rest_port}/metrics", timeout=20) as reply:
            metrics = parse_metrics(reply.read().decode())
        coverage = parse_coverage(ovs.appctl("coverage/show"))
        meters = parse_meter_stats(ovs.ofctl("meter-stats", gw.bridge))
        return {
            "at": time.time(),
            "packet_ins": metrics.get("packet_ins_total", 0.0),
            "flows_installed": metrics.get("flows_installed_total", 0.0),
            **{name: coverage.get(name, 0) for name in DROP_COVERAGE},
            "dp_lost": parse_dpctl_lost(ovs.appctl("dpctl/show")),
            "meter_in": sum(m["packets_in"] for m in meters.values()),
            "meter_dropped": sum(m["dropped"] for m in meters.values()),
            "meters": len(meters),
            "uplink_rx": parse_port_rx(ovs.ofctl("dump-ports", gw.bridge, gw.lab.name("gu"))),
            "router_tx": link_counters(self.router_uplink, self.router_ns)["tx"],
            "intake_dropped": parse_socket_drops(sh("ss", "-0", "-e", "-m"), gw.lab.name("gu")),
        }

    def log_events(self) -> dict[str, int]:
        """Health changes and disconnects logged since the last call."""
        events = count_events(self.controller_log.new_lines(), CONTROLLER_EVENTS)
        ovs_events = count_events(self.ovs_log.new_lines(), OVS_EVENTS)
        return {
            "down_lines": events["down"],
            "up_lines": events["up"],
            "disconnects": events["disconnect"] + ovs_events["disconnect"],
        }

    def datapath_flows(self) -> int:
        """Datapath flows now (``upcall/show``)."""
        return parse_upcall_show(self.gw.lab.ovs.appctl("upcall/show")).get("current", 0)

    def pins_from_elsewhere(self, legitimate: tuple[str, ...]) -> int:
        """Per-flow rules (controller mode's installed ones, switch mode's learned pins: one
        cookie kind) whose client is none of ``legitimate``: what a spoofed flood left."""
        dump = self.gw.lab.ovs.ofctl("dump-flows", self.gw.bridge, FLOW_RULES)
        pins = parse_pin_sources(dump)
        return sum(count for source, count in pins.items() if source not in legitimate)

    def connected(self) -> bool:
        """OVS's view: is the bridge's controller connected?"""
        out = self.gw.lab.ovs.vsctl("--columns=is_connected", "list", "controller")
        return "true" in out
