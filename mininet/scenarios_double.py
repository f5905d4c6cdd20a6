"""The double change (issue 16): a backend change and an ECMP move at once.  A connection moved
by ECMP to a gateway that never saw it is placed by that gateway's current table; when the
backends changed meanwhile, the table may name another VM than the one that holds the
connection, which then answers with a reset.

Three cases, each run with the mechanism off and on, with the same traffic (downloads from
chosen source ports, so many per VM) through the first gateway of the ECMP group:

- ``drain``: a VM drained (weight 0 on every gateway, by REST), ~1 s later every flow moved
  by ECMP to the second gateway;
- ``add``: a VM (first taken out of the VIP) added to the VIP on every gateway, then the move;
- ``failure``: a VM's service stops mid-download, then the first gateway leaves the ECMP group,
  restarts (switch and controller: it comes back with no flow entries and no history) and takes
  every flow back.  Downloads on the failed VM are lost with it and counted apart.

Mechanism *off* is today's configuration.  *On* is second chance at the gateways (every
gateway's VIP ``second_chance: duplicate``, by REST) and, on every VM, the drop rule
``VM_DROP_RULE`` (added before the downloads start): a TCP packet without SYN that conntrack
does not know is dropped silently instead of answered with a reset, so that of the two VMs a
duplicated packet reaches, the one without the connection stays quiet.

Judged: with it on, no download breaks (the failure case: none but those on the failed VM);
with it off the numbers are reported, not judged.  Switch-mode gateways do not apply second
chance: there every run is reported only.  Source ports 54000-59999 (case i, setting j: 54000
+ 1000 (2 i + j)).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable

from double_tally import (
    CASES,
    OFF,
    ON,
    SECOND_CHANCE_ON,
    SETTINGS,
    TABLE_COLUMNS,
    Run,
    table_rows,
    verdict,
)
from scenario_result import Counts, Result
from world import World

from lab.vmrule import VM_DROP_RULE, VM_RULE_TABLE
from ryu_app.core.model import MODE_SWITCH

SECOND_CHANCE = SECOND_CHANCE_ON  # the VIP's setting when the mechanism is on
# The VM side of the mechanism, the deployment guide's nftables command (docs/deployment.md;
# verified: an ACK to a listening port with no connection gets no reset with it, a reset
# without it; downloads started after it work).
FIRST_PORT = 54000
LEAD_IN = 1.5  # seconds of downloads before the first change
MOVE_AFTER = 1.0  # seconds from the backend change to the ECMP move at least (the lab)
STALL_TIMEOUT = 8.0  # a download gives up after this many seconds without data
SHORT_SECONDS = 7.0  # how long a download of the drain and add cases lasts (at most)
# The failure case's downloads last this much longer: they must outlast the failure's detection
# (~1.5 s) and the gateway's restart (~2 s here), and run on the restarted gateway for a while.
LONGER_BY = 4.0


def double_change(world: World, counts: Counts) -> dict:
    active = list(world.routed)
    result = Result(
        "double-change",
        f"a backend change and an ECMP move ({active[0].name} -> {active[1].name}) at once, "
        "second chance off and on",
    )
    judged = all(world.mode_of(g) != MODE_SWITCH for g in active)
    runs: list[Run] = []
    dropped: dict[str, int] = {}
    try:
        for setting in SETTINGS:
            problems = _set_mechanism(world, active, setting)
            result.check(f"mechanism {setting} on every gateway and VM", not problems,
                         "; ".join(problems))  # fmt: skip
            if problems:
                break
            world.wait_ready(active)
            for index, case in enumerate(CASES):
                first = FIRST_PORT + 1000 * (2 * index + SETTINGS.index(setting))
                stage = Stage(world, counts, active, Run(case, setting), first)
                runs.append(CASE_RUNNERS[case](stage))
            if setting == ON:
                dropped = _rule_drops(world)
    finally:
        world.route(active)
        _set_mechanism(world, active, OFF)
    world.wait_ready(active)
    _report(result, runs, judged, dropped)
    summary = result.as_dict()
    summary["runs"] = [{"case": r.case, "setting": r.setting, **r.summary()} for r in runs]
    summary["tables"] = [
        {
            "title": "double-change: downloads per case, second chance off and on "
            "(broken on: the VM it was placed on)",
            "columns": list(TABLE_COLUMNS),
            "rows": table_rows(runs),
        }
    ]
    return summary


@dataclasses.dataclass
class Stage:
    """One case run: the world, the gateways the flows start on (``first``) and move to
    (``second``), the run it fills in, and its source ports from ``first_port``."""

    world: World
    counts: Counts
    active: list
    run: Run
    first_port: int
    # Collects the downloads' progress, kept out of the scenario's own (plot-less) result.
    progress: Result = dataclasses.field(default_factory=lambda: Result("-", "-"))

    @property
    def first(self):
        return self.active[0]

    @property
    def second(self):
        return self.active[1]

    @property
    def client(self):
        return self.world.clients[0]

    def ports(self, extra_on: str) -> tuple[list[int], int]:
        """Source ports whose flows every gateway with all VMs gives each VM, so many per VM;
        and one more port of ``extra_on``'s, for look-ups (no download uses it)."""
        per_vm = max(2, self.counts.downloads // 6)
        by_vm: dict[str, list[int]] = {}
        span = range(self.first_port, self.first_port + 1000)
        for port, vm in self.world.predict(self.client, span).items():
            by_vm.setdefault(vm, []).append(port)
        ports = sorted(p for vm in self.world.vms for p in by_vm.get(vm, [])[:per_vm])
        return ports, by_vm[extra_on][per_vm]

    def start(self, ports: list[int], seconds: float) -> dict:
        """One download per port (each its own ``traffic.py``), about ``seconds`` long."""
        rate = self.counts.download_rate
        counts = dataclasses.replace(self.counts, download_bytes=int(rate * seconds))
        self.run.expected_bytes = counts.download_bytes
        return {
            port: self.world.downloads(
                self.client, port, 1, counts, self.progress, timeout=STALL_TIMEOUT
            )
            for port in ports
        }

    def note_placements(self, ports: list[int], timeout: float = 4.0) -> None:
        """The VM the first gateway placed each download on (from its flow table)."""
        address = self.world.client_address(self.client)
        deadline = time.monotonic() + timeout
        while True:
            entries = self.world.flows(self.first)
            placed = {e["src_port"]: e["backend"] for e in entries if e["src_ip"] == address}
            self.run.placed = {port: placed.get(port) for port in ports}
            if None not in self.run.placed.values() or time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def finish(self, transfers: dict) -> None:
        """Wait for every download; its final record by port."""
        for port, downloads in transfers.items():
            finals = downloads.wait()
            if finals:
                self.run.finals[port] = next(iter(finals.values()))

    def lookup(self, gateway, port: int) -> str | None:
        world = self.world
        query = (
            f"/v1/lookup?src_ip={world.client_address(self.client)}&src_port={port}"
            f"&dst_ip={world.vip.address}&dst_port={world.vip.port}"
        )
        return world.api(gateway, "GET", query)[1].get("backend")

    def wait_lookup(self, gateway, port: int, wanted: Callable[[str | None], bool], what: str):
        self.world.wait(lambda: wanted(self.lookup(gateway, port)), 15, what, interval=0.05)

    def on_every_gateway(self, method: str, path: str, body=None) -> None:
        for gateway in self.active:
            status, answer = self.world.api(gateway, method, path, body)
            if status >= 300:
                raise RuntimeError(f"{gateway.name}: {method} {path}: {status} {answer}")

    def duplicated(self, gateway) -> int:
        """Packets the gateway's second chance sent to two VMs (its /metrics)."""
        text = self.world.api(gateway, "GET", "/metrics")[1]
        found = re.search(r'^lockstep_second_chance(?:_total)?\{kind="duplicate"\} (\S+)$',
                          str(text), re.MULTILINE)  # fmt: skip
        return int(float(found[1])) if found else 0

    def move(self, since: float) -> tuple[int, int] | None:
        """ECMP moves every flow to the second gateway, ``MOVE_AFTER`` s after ``since``
        at the earliest; its non-SYN misses and duplicated packets before (None: a
        switch-mode gateway, which counts neither)."""
        time.sleep(max(0.0, since + MOVE_AFTER - time.monotonic()))
        before = self.counters(self.second)
        self.world.route([self.second])
        return before

    def counters(self, gateway) -> tuple[int, int] | None:
        if self.world.mode_of(gateway) == MODE_SWITCH:
            return None
        return self.world.non_syn_misses(gateway), self.duplicated(gateway)

    def count_moved(self, gateway, before: tuple[int, int] | None) -> None:
        after = self.counters(gateway)
        if before is not None and after is not None:
            self.run.moved_placed = after[0] - before[0]
            self.run.details["duplicated"] = after[1] - before[1]


def _drain_and_move(stage: Stage) -> Run:
    world = stage.world
    victim = stage.run.changed_vm = world.vip.backends[0].name
    ports, probe = stage.ports(victim)
    path = f"/v1/vips/{world.vip.name}/backends/{victim}"
    weight = world.vip.backend(victim).weight
    world.route([stage.first])
    transfers = stage.start(ports, _short_seconds(stage.counts))
    try:
        time.sleep(LEAD_IN)
        stage.note_placements(ports)
        stage.on_every_gateway("PATCH", path, {"weight": 0})
        drained = time.monotonic()
        stage.wait_lookup(stage.second, probe, lambda vm: vm != victim, f"no new flow to {victim}")
        before = stage.move(drained)
        stage.finish(transfers)
        stage.count_moved(stage.second, before)
    finally:
        stage.on_every_gateway("PATCH", path, {"weight": weight})
        world.route(stage.active)
    for gateway in stage.active:
        stage.wait_lookup(gateway, probe, lambda vm: vm == victim, f"{victim} back on {gateway}")
    return stage.run


def _add_and_move(stage: Stage) -> Run:
    world = stage.world
    newcomer = world.vip.backends[-1]
    stage.run.changed_vm = newcomer.name
    ports, probe = stage.ports(newcomer.name)
    backends = f"/v1/vips/{world.vip.name}/backends"
    stage.on_every_gateway("DELETE", f"{backends}/{newcomer.name}")
    try:
        for gateway in stage.active:
            stage.wait_lookup(
                gateway, probe, lambda vm: vm != newcomer.name, f"{gateway.name} without it"
            )
        world.route([stage.first])
        transfers = stage.start(ports, _short_seconds(stage.counts))
        time.sleep(LEAD_IN)
        stage.note_placements(ports)
        stage.on_every_gateway("POST", backends, dataclasses.asdict(newcomer))
        added = time.monotonic()
        stage.wait_lookup(
            stage.second, probe, lambda vm: vm == newcomer.name, f"{newcomer.name} taking flows"
        )
        before = stage.move(added)
        stage.finish(transfers)
        stage.count_moved(stage.second, before)
    finally:
        for gateway in stage.active:  # back in the VIP on every gateway, whatever happened
            names = [b["name"] for b in world.api(gateway, "GET", backends)[1]]
            if newcomer.name not in names:
                world.api(gateway, "POST", backends, dataclasses.asdict(newcomer))
        world.route(stage.active)
    world.wait_ready(stage.active)
    return stage.run


def _fail_and_restart(stage: Stage) -> Run:
    world, restarted = stage.world, stage.first
    victim = world.vip.backends[1].name
    stage.run.changed_vm = victim
    ports, _ = stage.ports(victim)
    survivors = set(world.vms) - {victim}
    world.route([restarted])
    transfers = stage.start(ports, _short_seconds(stage.counts) + LONGER_BY)
    stopped = False
    try:
        time.sleep(LEAD_IN)
        stage.note_placements(ports)
        world.stop_service(victim)
        for gateway in stage.active:
            world.wait(
                lambda g=gateway: (h := world.healthy(g)) is not None and victim not in h,
                world.vip.health.worst_detection_time + 5,
                f"{gateway.name} to mark {victim} down",
            )
        before = stage.move(time.monotonic() - MOVE_AFTER)  # leaves the ECMP group at once
        left = time.monotonic()
        restarted.stop(deleteIntfs=False)
        stopped = True
        restarted.start([])
        stopped = False
        world.wait(lambda: world.connected(restarted), 30, f"{restarted.name} connected")
        world.wait(
            lambda: world.healthy(restarted, probed=True) == survivors,
            30,
            f"{restarted.name} to see the VMs but {victim} up",
        )
        world.route([restarted])  # it takes every flow back, with no entry for any
        stage.run.details.update(
            away_s=round(time.monotonic() - left, 2),
            running_at_return=sum(1 for d in transfers.values() if not d.finals),
            second_chance_after_restart=_second_chance(world, restarted),
        )
        stage.finish(transfers)
        stage.count_moved(stage.second, before)
        since_restart = stage.counters(restarted)  # its counters started again from 0
        if since_restart is not None:
            stage.run.details.update(
                placed_by_restarted=since_restart[0], duplicated_by_restarted=since_restart[1]
            )
    finally:
        if stopped:
            restarted.start([])
        world.start_service(victim)
        world.route(stage.active)
    world.wait_ready(stage.active)
    return stage.run


CASE_RUNNERS: dict[str, Callable[[Stage], Run]] = {
    "drain": _drain_and_move,
    "add": _add_and_move,
    "failure": _fail_and_restart,
}


def _short_seconds(counts: Counts) -> float:
    return min(SHORT_SECONDS, counts.download_bytes / counts.download_rate)


def _set_mechanism(world: World, gateways, setting: str) -> list[str]:
    """Second chance on (``SECOND_CHANCE``) or off at every gateway's VIP, the VMs' drop rule
    added or removed; what did not work (empty: done)."""
    problems = []
    path = f"/v1/vips/{world.vip.name}"
    for gateway in gateways:
        status, vip = world.api(gateway, "GET", path)
        wanted = SECOND_CHANCE if setting == ON else OFF
        if status != 200:
            problems.append(f"{gateway.name}: GET {path}: {status} {vip}")
            continue
        if vip.get("second_chance", OFF) == wanted:
            continue
        status, answer = world.api(gateway, "PUT", path, {**vip, "second_chance": wanted})
        if status >= 300:
            problems.append(f"{gateway.name}: PUT second_chance={wanted}: {status} {answer}")
    for vm in world.vms.values():
        if setting == ON:
            vm.cmd(f"nft '{VM_DROP_RULE}'")
        else:
            vm.cmd(f"nft delete table {VM_RULE_TABLE} 2>/dev/null")
        present = vm.cmd(f"nft list table {VM_RULE_TABLE} >/dev/null 2>&1 && echo yes || echo no")
        if present.strip() != ("yes" if setting == ON else "no"):
            problems.append(f"{vm.name}: drop rule {'missing' if setting == ON else 'left'}")
    return problems


def _second_chance(world: World, gateway) -> str:
    """The gateway's second-chance setting for the VIP (as its REST API shows it)."""
    return world.api(gateway, "GET", f"/v1/vips/{world.vip.name}")[1].get("second_chance", OFF)


def _rule_drops(world: World) -> dict[str, int]:
    """Packets each VM's drop rule dropped (duplicates that reached a VM without the flow)."""
    drops = {}
    for name, vm in world.vms.items():
        listing = vm.cmd(f"nft list table {VM_RULE_TABLE} 2>/dev/null")
        match = re.search(r"counter packets (\d+)", listing)
        drops[name] = int(match[1]) if match else 0
    return drops


def _report(result: Result, runs: list[Run], judged: bool, dropped: dict[str, int]) -> None:
    """One judged check per run (``verdict``), whether its flows really moved, and the
    figures the table shows."""
    for run in runs:
        ok, detail = verdict(run)
        if not judged and ok is not None:
            ok, detail = None, f"switch mode, second chance does not apply: {detail}"
        result.check(f"{run.case}, second chance {run.setting}: downloads not broken", ok, detail)
        result.check(
            f"{run.case}, second chance {run.setting}: flows on the changed VM",
            run.touched(),
            f"{run.changed_vm} changed; placed on {run.summary()['placed_on']}",
        )
        if "running_at_return" in run.details:
            result.check(
                f"{run.case}, second chance {run.setting}: downloads reached the restarted gateway",
                run.details["running_at_return"] > 0,
                f"{run.details['running_at_return']} still running when it took the flows back",
            )
        if run.moved_placed is not None:
            result.check(
                f"{run.case}, second chance {run.setting}: the flows moved",
                run.moved_placed > 0,
                f"{run.moved_placed} non-SYN packets placed where they moved",
            )
    for setting in SETTINGS:
        mine = [r for r in runs if r.setting == setting]
        result.figures[f"broken_{setting}"] = [len(r.broken) for r in mine]
        result.figures[f"started_{setting}"] = [r.started for r in mine]
    result.figures["lost_with_vm"] = [len(r.lost_with_vm) for r in runs if r.case == "failure"]
    if dropped:
        result.figures["dropped_by_vm_rule"] = sum(dropped.values())
