"""The running emulation as the scenarios see it (``World``): the router's routes, the gateways'
REST APIs, the VMs' servers, and the traffic tool (``traffic.py``) run in client hosts; and
``Downloads``, which follows one ``traffic.py downloads`` process.  A scenario asks the world
for traffic and for the gateways' views, and breaks things through it.

Each gateway runs its VIPs in a mode (``mode_of``: the demo's ``--mode``).  A controller-mode
gateway's flows are its controller's (``/v1/flows``); a switch-mode gateway's are pins its
switch learned, which its controller does not list: the world reads them from the bridge
(``ovs-ofctl dump-flows``, ``switch_table.py``) as well, so a scenario asks ``flows`` and gets
the gateway's flows whoever holds them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import switch_table
from scenario_result import Counts, Result

from ryu_app.cli.remote import Remote
from ryu_app.core.model import MODE_CONTROLLER, MODE_SWITCH
from topology import emulation
from topology.schema import endpoint_text

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


class World:
    def __init__(self, net, plan: emulation.Plan, config: Path, log=print):
        self.net = net
        self.plan = plan
        self.config = config
        self.log = log
        deployment = plan.deployment
        self.vip = deployment.vips[0]
        self.gateways = [net.get(g.name) for g in deployment.gateways]
        self.router = net.get(deployment.router.name)
        self.clients = [net.get(c.name) for c in deployment.clients]
        self.vms = {b.name: net.get(b.name) for b in self.vip.backends}
        self.routed: list = []
        self.traffic: list[subprocess.Popen] = []  # every traffic.py started, for clean-up
        self.spare = None  # a gateway built but stopped (demo.py), for the scale-out scenario

    def stop_traffic(self) -> None:
        for process in self.traffic:
            if process.poll() is None:
                process.kill()
                process.wait(5)

    # ---- the gateways ---------------------------------------------------------------------

    def api(self, gateway, method: str, path: str, body=None, timeout: float = 10):
        """(status, decoded JSON) of one REST call; ``remote.Unreachable`` (an OSError) if
        the controller does not answer within ``timeout`` seconds."""
        remote = Remote(f"http://{endpoint_text(*gateway.gateway.rest)}", timeout=timeout)
        return remote.call(method, path, body)

    def healthy(self, gateway, probed: bool = False) -> set[str] | None:
        """The backends this gateway calls healthy (with ``probed``: and whose last probe
        succeeded, so that a start-up still in its first probes does not count as settled);
        None if it did not answer (which says nothing about the backends)."""
        try:
            status, body = self.api(gateway, "GET", "/v1/health")
        except OSError:
            return None
        if status != 200:
            return None
        return {
            row["backend"]
            for row in body["vips"][self.vip.name]
            if row["healthy"] and (not probed or row.get("last_result") == "ok")
        }

    def connected(self, gateway) -> bool:
        try:
            return self.api(gateway, "GET", "/v1/status")[1]["switch_connected"]
        except OSError:
            return False

    def wait(self, predicate, timeout: float, what: str, interval: float = 0.1) -> float:
        """Seconds it took; raises TimeoutError naming ``what``."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)
        return time.monotonic() - start

    def wait_ready(self, gateways=None, timeout: float = 60) -> None:
        everyone = set(self.vms)
        for gateway in gateways or self.routed or self.gateways:
            self.wait(lambda g=gateway: self.connected(g), timeout, f"{gateway.name} connected")
            self.wait(
                lambda g=gateway: self.healthy(g, probed=True) == everyone,
                timeout,
                f"{gateway.name}: all VMs up and answering",
            )

    def mode_of(self, gateway) -> str:
        """Who places this gateway's new flows: its controller or its switch."""
        return getattr(gateway, "vip_mode", MODE_CONTROLLER)

    def modes(self) -> dict[str, str]:
        """Each gateway's mode, the spare's too."""
        spare = [self.spare] if self.spare is not None else []
        return {g.name: self.mode_of(g) for g in [*self.gateways, *spare]}

    def flows(self, gateway) -> list[dict]:
        """The gateway's flow entries (``src_ip``, ``src_port``, ``backend``): its controller's,
        and on a switch-mode gateway the pins in its switch too (one entry per flow)."""
        entries, offset = [], 0
        while offset is not None:
            _, page = self.api(gateway, "GET", f"/v1/flows?limit=1000&offset={offset}")
            entries += page["flows"]
            offset = page["next_offset"]
        if self.mode_of(gateway) == MODE_SWITCH:
            known = {(e["src_ip"], e["src_port"]) for e in entries}
            pins = switch_table.pins(self.switch_rules(gateway), self.backend_macs())
            entries += [p for p in pins if (p["src_ip"], p["src_port"]) not in known]
        return entries

    def switch_rules(self, gateway) -> list[switch_table.Rule]:
        """The rules in the gateway's bridge (the private OVS's ``ovs-ofctl``: demo.py put its
        ``OVS_*`` variables in the environment)."""
        argv = ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", gateway.name]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        return switch_table.parse(done.stdout)

    def backend_macs(self) -> dict[str, str]:
        return {b.mac.lower(): b.name for b in self.vip.backends}

    def syns_placed(self, gateway) -> dict[str, int]:
        """New connections (SYNs) a switch-mode gateway's slot rules have sent, per VM."""
        return dict(switch_table.syns_placed(self.switch_rules(gateway), self.backend_macs()))

    def slot_targets(self, gateway) -> dict[str, int]:
        """A switch-mode gateway's slot rules per VM they send to."""
        return dict(switch_table.slot_targets(self.switch_rules(gateway), self.backend_macs()))

    def switch_choice(self, gateway, port: int) -> str | None:
        """The VM a switch-mode gateway's slot rules give a flow from source ``port`` that has
        no pin there (what a connection moved onto it gets)."""
        rules = self.switch_rules(gateway)
        return switch_table.slot_owner(rules, port, self.backend_macs())

    def pinned(
        self, gateway, first_port: int, span: int = 1000, in_switch: bool = False
    ) -> set[tuple[str, int]]:
        """The clients' flows from source ports ``first_port`` + ``span`` this gateway holds
        (``in_switch``: only those with a per-flow rule in its switch, whoever installed it)."""
        clients = {self.client_address(c) for c in self.clients}
        if in_switch:
            entries = switch_table.pins(self.switch_rules(gateway), self.backend_macs())
        else:
            entries = self.flows(gateway)
        return {
            (e["src_ip"], e["src_port"])
            for e in entries
            if e["src_ip"] in clients and first_port <= (e["src_port"] or 0) < first_port + span
        }

    def wait_pinned(
        self, gateway, first_port: int, among=None, timeout: float = 4.0, in_switch: bool = False
    ) -> set:
        """The flows from ``first_port`` + 1000 that ``gateway`` held (only those of ``among``,
        if given), polled until it held them all (without ``among``: for a second after the
        first) or ``timeout`` passes: a switch learns a moved flow's pin from its next packet,
        and drops it 2 s after the flow's FIN."""
        deadline = time.monotonic() + timeout
        held: set = set()
        first_seen = None
        while time.monotonic() < deadline:
            now = self.pinned(gateway, first_port, in_switch=in_switch)
            held |= now & set(among) if among is not None else now
            if among is not None and held == set(among):
                break
            if among is None and held:
                first_seen = first_seen or time.monotonic()
                if time.monotonic() - first_seen >= 1.0:
                    break
            time.sleep(0.2)
        return held

    def flows_from(self, gateway, first_port: int, span: int = 1000) -> int:
        """Entries in a gateway's flow table for client source ports ``first_port`` + ``span``."""
        return len(self.pinned(gateway, first_port, span))

    def non_syn_misses(self, gateway) -> int:
        """Packets other than a SYN that this gateway placed: connections that moved to it."""
        path = "/v1/flows?limit=1"
        return self.api(gateway, "GET", path)[1]["counters"]["tcp_non_syn_misses"]

    # ---- the router -----------------------------------------------------------------------

    def route(self, gateways) -> None:
        """ECMP for the VIP over these gateways (each by its first address of the VIP's IP
        version)."""
        self.routed = list(gateways)
        if not gateways:
            raise ValueError("a route needs at least one gateway")
        addresses = [self._address(g) for g in gateways]
        args = emulation.vip_route_args(self.plan, self.vip.address, addresses)
        self.router.cmd("ip", "route", "replace", *args)
        self.router.cmd("ip", "route", "flush", "cache")
        shown = self.router.cmd("ip", "route", "show", self.vip.address)
        missing = [a for a in addresses if f"via {a} " not in shown]
        if missing:
            raise RuntimeError(f"the router did not take next-hop(s) {missing}: {shown.strip()}")

    def _address(self, gateway) -> str:
        version = 6 if ":" in self.vip.address else 4
        return next(a for a in gateway.gateway.addresses if (":" in a) == (version == 6))

    def link(self, gateway, up: bool) -> None:
        """Take the router's link to a gateway down (its routes go with it) or up again (and
        put the routes back)."""
        device = f"{self.router.name}-{gateway.name}"
        self.router.cmd("ip", "link", "set", device, "up" if up else "down")
        if up:
            for route in self.plan.hosts[self.router.name].routes:
                self.router.cmd("ip", "route", "replace", *route)

    # ---- traffic --------------------------------------------------------------------------

    def client_address(self, client) -> str:
        return next(c.address for c in self.plan.deployment.clients if c.name == client.name)

    def spread(self, client, first_port: int, count: int) -> list[dict]:
        """Short connections from ``client``; one record per connection."""
        argv = [
            PYTHON, str(HERE / "traffic.py"), "spread", "--vip", self.vip.address,
            "--port", str(self.vip.port), "--src", self.client_address(client),
            "--first-port", str(first_port), "--count", str(count), "--parallel", "8",
        ]  # fmt: skip
        process = client.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.traffic.append(process)
        output = process.communicate()[0]
        records = [json.loads(line) for line in output.splitlines() if line.strip()]
        if not any(r.get("done") for r in records):
            raise RuntimeError(
                f"traffic.py spread ended without its summary ({len(records)} lines)"
            )
        return [r for r in records if "sport" in r]

    def spread_on(self, client, ports: list[int]) -> list[dict]:
        """One short connection from each of these source ports."""
        records = []
        for port in ports:
            records += self.spread(client, port, 1)
        return records

    def downloads(
        self,
        client,
        first_port: int,
        count: int,
        counts: Counts,
        result: Result,
        timeout: float | None = None,
    ):
        """Start ``count`` downloads (each giving up after ``timeout`` seconds without data:
        traffic.py's default if None); returns a ``Downloads`` that collects their progress."""
        argv = [
            PYTHON, str(HERE / "traffic.py"), "downloads", "--count", str(count),
            "--vip", self.vip.address, "--port", str(self.vip.port),
            "--src", self.client_address(client), "--first-sport", str(first_port),
            "--size", str(counts.download_bytes), "--rate", str(counts.download_rate),
            "--progress", "0.25", "--label", f"{client.name}:{first_port}+",
        ]  # fmt: skip
        if timeout is not None:
            argv += ["--timeout", str(timeout)]
        process = client.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.traffic.append(process)
        return Downloads(process, result, client.name)

    def start_downloads(self, counts: Counts, result: Result, first_port: int) -> list:
        """``counts.downloads`` downloads spread over the clients (client i from ``first_port``
        + 100 i); their ``Downloads``."""
        per_client = -(-counts.downloads // len(self.clients))
        started, left = [], counts.downloads
        for index, client in enumerate(self.clients):
            count = min(per_client, left)
            if count <= 0:
                break
            started.append(self.downloads(client, first_port + 100 * index, count, counts, result))
            left -= count
        result.event("action", f"{counts.downloads} downloads started")
        return started

    def predict(self, client, ports) -> dict[int, str]:
        """What every gateway with all VMs healthy gives these flows (``lockstep lookup``)."""
        src = self.client_address(client)
        rows = "".join(
            f"{src},{p},{self.vip.address},{self.vip.port},{self.vip.protocol}\n" for p in ports
        )
        output = subprocess.run(
            [PYTHON, "-m", "ryu_app.cli", "lookup", "--config", str(self.config),
             "--vip", self.vip.name],
            input=rows, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return {int(line.split(",")[1]): line.rsplit(",", 1)[1] for line in output.splitlines()}

    # ---- the VMs --------------------------------------------------------------------------

    def stop_service(self, vm_name: str) -> None:
        vm = self.vms[vm_name]
        vm.kill(vm.servers[0], signal.SIGTERM)  # vmserver.py; iperf3 stays

    def start_service(self, vm_name: str) -> None:
        vm = self.vms[vm_name]
        log = vm.log_dir / f"{vm.name}.server.log"
        vm.servers[0] = vm.spawn(f"{PYTHON} {HERE / 'vmserver.py'} {vm.name}", log)


class Downloads:
    """Reads a ``traffic.py downloads`` process's lines in a thread, into the result's
    transfers."""

    def __init__(self, process, result: Result, prefix: str):
        self.process = process
        self.result = result
        self.prefix = prefix
        self.finals: dict[str, dict] = {}
        self.transfers: dict[str, dict] = {}
        self.offset = time.monotonic() - result.started
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # not one of traffic.py's lines
            label = record.get("label")
            if label is None:
                continue
            name = f"{self.prefix}/{label}"
            transfer = self.transfers.setdefault(name, {"name": name, "ok": None, "points": []})
            if record.get("done"):
                self.finals[name] = record
                transfer["ok"] = bool(record["ok"])
                transfer["points"].append(
                    [round(self.offset + record["seconds"], 3), record["bytes"]]
                )
            else:
                transfer["points"].append([round(self.offset + record["t"], 3), record["bytes"]])

    def wait(self, timeout: float = 120) -> dict[str, dict]:
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.process.kill()
            self.thread.join(5)
        self.result.transfers += list(self.transfers.values())
        return self.finals
