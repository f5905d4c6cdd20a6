"""How new connections spread: over the gateways (ECMP), over the VMs (by weight), and to the
VM ``lockstep lookup`` predicts.

Which gateway carried which connection: a controller-mode gateway's flow table says it; a
switch-mode gateway's pins go 2 s after a connection's FIN or RST (``PIN_FIN_IDLE``), before
the spread ends, so there it is what its SYN slot rules sent during the spread (their packet
counters, per VM).
"""

from __future__ import annotations

from collections import Counter

from scenario_result import Counts, Result
from world import World

from ryu_app.core.model import MODE_SWITCH


def spread(world: World, counts: Counts) -> dict:
    result = Result("spread", f"{counts.connections:,} short connections over the VMs")
    world.route(world.routed or world.gateways)
    per_client = -(-counts.connections // len(world.clients))
    served: dict[tuple[str, int], dict] = {}
    predicted: dict[tuple[str, int], str] = {}
    first = 20000
    syns_before = {g.name: world.syns_placed(g) for g in world.routed if _by_switch(world, g)}
    for client in world.clients:
        for record in world.spread(client, first, per_client):
            served[(client.name, record["sport"])] = record
        for port, vm in world.predict(client, range(first, first + per_client)).items():
            predicted[(client.name, port)] = vm
    ok = [r for r in served.values() if r["ok"]]
    asked = per_client * len(world.clients)
    result.figures.update(connections=len(served), failed=len(served) - len(ok))
    result.check("every connection succeeded", len(ok) == asked, f"{len(ok)}/{asked}")
    wrong = [k for k, r in served.items() if r["ok"] and r["vm"] != predicted.get(k)]
    result.check(
        "each went to the VM `lockstep lookup` predicts", not wrong, f"{len(wrong)} differ"
    )
    per_gateway = _carried(world, served, syns_before)
    result.per_gateway_vm = {g: dict(c) for g, c in per_gateway.items()}
    carried = {g: sum(c.values()) for g, c in per_gateway.items()}
    result.figures["per_gateway"] = carried
    counted = {g.name: "SYNs placed" if _by_switch(world, g) else "flows" for g in world.routed}
    result.check(
        "every gateway carried traffic", all(carried.values()), f"{carried} (counted: {counted})"
    )
    weights = {b.name: b.weight for b in world.vip.backends}
    total_weight = sum(weights.values())
    by_vm = Counter(r["vm"] for r in ok)
    worst = 0.0
    for vm, weight in weights.items():
        if weight:
            expected = weight / total_weight
            worst = max(worst, abs(by_vm[vm] / max(len(ok), 1) - expected) / expected)
    result.figures["worst_share_error_pct"] = round(100 * worst, 1)
    result.check(
        "each VM's share within 15% of its weight's", worst <= 0.15, f"worst {100 * worst:.1f}%"
    )
    return result.as_dict()


def _by_switch(world: World, gateway) -> bool:
    return world.mode_of(gateway) == MODE_SWITCH


def _carried(world: World, served: dict, syns_before: dict) -> dict[str, Counter]:
    """Per gateway, the spread's connections it carried per VM: a controller-mode gateway's own
    flow table; a switch-mode gateway's SYN slot rules' packets since ``syns_before``."""
    sources = {world.client_address(c): c.name for c in world.clients}
    per_gateway: dict[str, Counter] = {}
    for gateway in world.routed:
        counter = per_gateway[gateway.name] = Counter()
        if _by_switch(world, gateway):
            counter.update(world.syns_placed(gateway))
            counter.subtract(syns_before[gateway.name])
            counter = per_gateway[gateway.name] = +counter
            continue
        for entry in world.flows(gateway):
            key = (sources.get(entry["src_ip"]), entry["src_port"])
            if key in served:
                counter[entry["backend"]] += 1
    return per_gateway
