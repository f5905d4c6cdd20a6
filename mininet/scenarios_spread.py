"""How new connections spread: over the gateways (ECMP), over the VMs (by weight), and to the
VM ``lockstep lookup`` predicts.
"""

from __future__ import annotations

from collections import Counter

from scenario_result import Counts, Result
from world import World


def spread(world: World, counts: Counts) -> dict:
    result = Result("spread", f"{counts.connections:,} short connections over the VMs")
    world.route(world.routed or world.gateways)
    per_client = -(-counts.connections // len(world.clients))
    served: dict[tuple[str, int], dict] = {}
    predicted: dict[tuple[str, int], str] = {}
    first = 20000
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
    # Which gateway carried which: each gateway's own flow table.
    sources = {world.client_address(c): c.name for c in world.clients}
    per_gateway: dict[str, Counter] = {}
    for gateway in world.routed:
        counter = per_gateway[gateway.name] = Counter()
        for entry in world.flows(gateway):
            key = (sources.get(entry["src_ip"]), entry["src_port"])
            if key in served:
                counter[entry["backend"]] += 1
    result.per_gateway_vm = {g: dict(c) for g, c in per_gateway.items()}
    carried = {g: sum(c.values()) for g, c in per_gateway.items()}
    result.figures["per_gateway"] = carried
    result.check("every gateway carried traffic", all(carried.values()), str(carried))
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
