"""``GET /v1/lookup`` and ``lockstep lookup`` answer a port-bits VIP by its slot (issue 14):
the same backend as the packet path, with the slot and the bits a switch matches."""

from __future__ import annotations

import io
import random

from ryu_app.cli import commands as cli
from ryu_app.core.flowkey import flow_from_fields
from ryu_app.core.maglev import build_table
from ryu_app.core.model import PLACEMENT_PORT_BITS
from ryu_app.core.slots import port_slot
from tests.ryu_app.conftest import NEW_VIP

BY_PORT = {**NEW_VIP, "placement": "port-bits", "table_size": 256}
BY_PORT["backends"] = [
    {"name": f"vm{i}", "tunnel_ip": f"192.168.100.{10 + i}", "mac": f"02:00:00:00:01:{i:02x}"}
    for i in range(1, 4)
]


def test_the_lookup_answers_by_slot_as_the_packet_path_places(harness):
    harness.service.create_vip(BY_PORT, harness.now)
    harness.settle()
    balancer = harness.core.balancer
    rng = random.Random(4)
    for _ in range(300):
        src, sport = (
            f"10.1.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            rng.randrange(1024, 65536),
        )
        query = {"src_ip": src, "src_port": str(sport), "dst_ip": "10.0.0.101", "dst_port": "443"}
        answer = harness.service.lookup(query, harness.now)
        assert answer["source"] == "slot" and answer["slot"] == port_slot(sport, 256)
        assert answer["slot_bits"] == "tcp_src & 0x1fe"
        decision = balancer.pick(
            flow_from_fields(src, sport, "10.0.0.101", 443, "tcp"), harness.now
        )
        assert answer["backend"] == decision.backend.name
        again = harness.service.lookup(query, harness.now)  # now from the flow table
        assert again["source"] == "table" and again["backend"] == answer["backend"]


def test_a_hash_vips_lookup_has_no_slot(harness):
    query = {"src_ip": "10.1.0.11", "src_port": "40000", "dst_ip": "10.0.0.100", "dst_port": "80"}
    answer = harness.service.lookup(query, harness.now)
    assert answer["source"] == "hash" and "slot" not in answer


def test_lockstep_lookup_answers_by_slot_from_the_options():
    pairs = [(f"vm{i}", 1) for i in range(1, 4)]
    args = cli._parser().parse_args(
        ["lookup", "--placement", "port-bits"]
        + [f"--backend=vm{i}=10.9.0.{i}" for i in range(1, 4)]
    )
    table, mode, placement = cli._lookup_table(args)
    assert placement == PLACEMENT_PORT_BITS and table.table_size == 256  # 32 x 3, at least 256
    owners = build_table(pairs, 256, PLACEMENT_PORT_BITS).owners()
    rows = [f"10.1.0.{i},{40000 + 2 * i},10.0.0.100,80,tcp" for i in range(200)]
    rows.append("10.1.0.1,123,10.0.0.100,53,udp")
    out, err = io.StringIO(), io.StringIO()
    assert cli.annotate(rows, out, err, table, mode, placement) == 1
    answers = out.getvalue().splitlines()
    for i, line in enumerate(answers):
        assert line.rsplit(",", 1)[1] == owners[port_slot(40000 + 2 * i, 256)]
    assert "port-bits places tcp flows only" in err.getvalue()
