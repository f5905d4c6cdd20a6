"""A gateway's REST side in-process: core + GatewayService + RestApi, with a fake switch table
that the service's changes reach (``table``, ``sent``: its messages), the tables they ask for
(built by ``settle``, as the app's worker would) and what it saves to the state file."""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path

import pytest
from webob import Request

from ryu_app.api.rest import RestApi
from ryu_app.api.service import GatewayService
from ryu_app.core import pipeline
from ryu_app.core.balancer import TableCache
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.packets import TCP_SYN, tcp_frame
from tests.ryu_app.fake_oftable import FakeOFTable, packet_fields, raw_packet_in, run_actions
from topology import deployment as deployment_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "topology" / "examples" / "default.yaml"
DEPLOYMENT = deployment_file.load(EXAMPLE)
# A VIP the example deployment does not have: one backend, a small table.
NEW_VIP = {
    "name": "api",
    "address": "10.0.0.101",
    "port": 443,
    "table_size": 251,
    "backends": [{"name": "vm1", "tunnel_ip": "192.168.100.11", "mac": "02:00:00:00:01:01"}],
}
UPLINK, TUNNEL = 1, 2
WALL_OFFSET = 1_800_000_000.0  # wall clock = monotonic clock + this
# Shared by every harness: a 65537-slot Maglev table takes ~60 ms to build, and tables are
# pure values keyed by (size, backends), so sharing them changes no answer.
TABLES = TableCache()


class Harness:
    WALL_OFFSET = WALL_OFFSET

    def __init__(
        self, gateway: str = "gw1", token: str | None = None, tables: TableCache | None = None
    ):
        self.gateway = DEPLOYMENT.gateway(gateway)
        self.now = 100.0
        self.core = GatewayCore(self.gateway, rng=random.Random(1))
        self.core.balancer.cache = TABLES if tables is None else tables  # before any build
        self.table = FakeOFTable()
        self.sent: list[bytes] = []  # messages the service's changes sent to the switch
        self.tables_wanted: list = []  # tables they asked for, not built yet (``settle``)
        self.apply(self.core.set_vips(list(DEPLOYMENT.vips), self.now))
        self.settle()
        self.apply(self.core.on_connect(self.now))
        ports = {self.gateway.uplink_port: UPLINK, self.gateway.tunnel_port: TUNNEL}
        self.apply(self.core.on_ports(ports, self.now))
        self.sent.clear()
        self.saved: list = []
        self.save_error: Exception | None = None
        self.service = GatewayService(
            self.core, DEPLOYMENT, self.gateway, apply=self.apply, save=self._save
        )
        self.app = RestApi(
            self.service,
            token=token,
            clock=lambda: self.now,
            wall_clock=lambda: self.now + WALL_OFFSET,
        )

    def _save(self, vips) -> None:
        if self.save_error is not None:
            raise self.save_error
        self.saved.append(vips)

    def apply(self, effects) -> None:
        """What the app's ``apply`` does: the messages to the switch, the tables to build."""
        self.table.apply(effects.messages)
        self.sent += effects.messages
        self.tables_wanted += effects.tables

    def settle(self) -> None:
        """Build and install the tables the core asked for (the app does it in a worker)."""
        requests, self.tables_wanted = self.tables_wanted, []
        for request in requests:
            table = self.core.balancer.cache.get_or_build(request.spec)
            self.apply(
                self.core.table_built(request, table, self.now)
            )  # (a switch VIP's slot rules)

    def request(self, method: str, path: str, body=None, token: str | None = None, raw=None):
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        if raw is not None:
            headers["Content-Type"] = "application/json"
        kwargs = {"method": method, "headers": headers}
        if raw is not None:
            kwargs["body"] = raw
        response = Request.blank(path, **kwargs).get_response(self.app)
        self.settle()
        return response

    def get_json(self, path: str):
        response = self.request("GET", path)
        assert response.status_int == 200, response.text
        return response.json

    def client_packet(
        self, sport: int, src: str = "10.1.0.11", dst: str = "10.0.0.100", dport: int = 80
    ):
        """A client's SYN to a VIP, punted by the switch: the core's answer goes to the switch
        (not into ``sent``: that is the REST changes' own); returns it."""
        packet_in = raw_packet_in(UPLINK, self.syn(sport, src, dst, dport))
        effects = self.core.on_messages([packet_in], self.now)
        self.table.apply(effects.messages)
        return effects

    def syn(self, sport: int, src: str = "10.1.0.11", dst: str = "10.0.0.100", dport: int = 80):
        """A client's SYN to a VIP, as the router delivers it to the gateway."""
        return tcp_frame(
            bytes.fromhex("02000000fe01"),
            bytes.fromhex("020000000001"),
            ipaddress.ip_address(src).packed,
            ipaddress.ip_address(dst).packed,
            sport,
            dport,
            1,
            0,
            TCP_SYN,
        )

    def where(self, frame: bytes):
        """Where the switch sends ``frame`` arriving on the uplink (``fake_oftable.Forwarding``)."""
        return self.table.forward(packet_fields(UPLINK, frame))

    def flow_backends(self) -> list[str]:
        """The backends the switch's per-flow rules send to (by tunnel endpoint), sorted."""
        vips = (*DEPLOYMENT.vips, *self.service.deployment.vips)
        tunnels = {b.tunnel_ip: b.name for vip in vips for b in vip.backends}
        rules = self.table.rules_at(pipeline.PRIORITY_FLOW)
        ends = (run_actions(rule.actions, {}).tunnel[0] for rule in rules)
        return sorted(tunnels.get(end, end) for end in ends)


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
def make_harness():
    """``make_harness(gateway="gw1", token=None, tables=None)``: more than one, one with a
    token, or one with its own table cache."""
    return Harness
