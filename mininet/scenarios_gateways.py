"""A gateway fails (its router next-hop removed, or its switch and controller killed), its
controller restarts, or a new gateway joins: connections in flight survive, because the gateways
that take them over pick the same VM.
"""

from __future__ import annotations

import signal
import time

from scenario_result import Counts, Result, finish_downloads
from world import World


def gateway_nexthop(world: World, counts: Counts) -> dict:
    return _gateway_failure(world, counts, kill=False)


def gateway_kill(world: World, counts: Counts) -> dict:
    return _gateway_failure(world, counts, kill=True)


def _gateway_failure(world: World, counts: Counts, kill: bool) -> dict:
    how = "switch and controller killed, router link down" if kill else "router next-hop removed"
    result = Result(
        "gateway-kill" if kill else "gateway-nexthop",
        f"{counts.downloads} downloads while a gateway fails ({how})",
    )
    active = list(world.routed or world.gateways)
    world.route(active)
    victim, others = active[0], active[1:]
    first = 30000 + (1000 if kill else 0)
    moved_before = sum(world.non_syn_misses(g) for g in others)
    transfers = world.start_downloads(counts, result, first)
    try:
        time.sleep(2.5)
        on_victim = world.flows_from(victim, first)
        result.figures["on_failed_gateway"] = on_victim
        result.check(f"downloads were running through {victim.name}", on_victim > 0, str(on_victim))
        if kill:
            result.event("failure", f"{victim.name}: switch and controller killed", victim.name)
            victim.stop(deleteIntfs=False)
            world.link(victim, up=False)
        else:
            result.event(
                "failure", f"{victim.name} removed from the router's next-hops", victim.name
            )
        world.route(others)
        finish_downloads(result, transfers, counts.downloads)
        result.event("recovery", "all downloads ended")
        moved = sum(world.non_syn_misses(g) for g in others) - moved_before
        result.figures["moved"] = moved
        result.check("the other gateways placed the moved connections", moved > 0, str(moved))
    finally:
        if kill:
            world.link(victim, up=True)
            victim.start([])
        world.route(active)
    world.wait_ready([victim])
    return result.as_dict()


def controller_restart(world: World, counts: Counts) -> dict:
    gateway = world.routed[0]
    result = Result(
        "controller-restart", f"{gateway.name}'s controller killed (SIGKILL) mid-transfer"
    )
    first = 45000
    transfers = world.start_downloads(counts, result, first)
    time.sleep(2.0)
    on_gateway = world.flows_from(gateway, first)
    result.figures["through_it"] = on_gateway
    result.check(f"downloads were running through {gateway.name}", on_gateway > 0, str(on_gateway))
    gateway.kill_controller(signal.SIGKILL)
    result.event("failure", f"{gateway.name}: controller killed", gateway.name)
    time.sleep(0.5)
    gateway.start_controller()
    result.event("action", f"{gateway.name}: controller started again", gateway.name)
    seconds = world.wait(lambda: world.connected(gateway), 30, "the switch to reconnect")
    result.event("recovery", f"{gateway.name}: switch reconnected", gateway.name)
    result.figures["reconnect_s"] = round(seconds, 2)
    finish_downloads(result, transfers, counts.downloads)
    replaced = world.non_syn_misses(gateway)
    result.figures["placed_again"] = replaced
    result.check(
        "the new controller placed the running connections again", replaced > 0, str(replaced)
    )
    world.wait_ready([gateway])
    return result.as_dict()


def scale_out(world: World, counts: Counts) -> dict:
    """The world's spare gateway (built, then stopped, by demo.py) joins the ECMP group during
    downloads; it is one of the world's gateways afterwards."""
    newcomer = world.spare
    if newcomer is None:
        raise RuntimeError("no spare gateway: demo.py builds one only for scale-out")
    result = Result("scale-out", f"{newcomer.name} added as a next-hop during downloads")
    active = list(world.routed)
    newcomer.start([])
    world.wait_ready([newcomer])
    result.event(
        "action", f"{newcomer.name} up (switch, controller, all VMs healthy)", newcomer.name
    )
    transfers = world.start_downloads(counts, result, 47000)
    time.sleep(2.0)
    world.route([*active, newcomer])
    result.event("action", f"{newcomer.name} added to the router's next-hops", newcomer.name)
    finish_downloads(result, transfers, counts.downloads)
    moved = world.non_syn_misses(newcomer)
    result.figures["moved_to_newcomer"] = moved
    result.check(
        f"connections moved onto {newcomer.name} (non-SYN packets placed)", moved > 0, str(moved)
    )
    world.gateways.append(newcomer)
    world.spare = None
    return result.as_dict()
