"""One gateway switch's controller logic, free of the framework and its event loop.

Each entry point takes ``now`` and the event's data and returns one ``Effects``: the OpenFlow
messages to send (bytes, from ``openflow``, the one encoder), the Maglev tables to build, the
lines to log.  The os-ken app (``ryu_app.shell.app``) only decodes events and applies what comes
back; nothing is left here for it to collect later.  Faucet's valve is the model: the app is a
shim, this is where decisions live and where unit tests drive them (against a fake flow table).
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from dataclasses import dataclass, field

from ryu_app.core import ofmeter, pinread, pipeline
from ryu_app.core import openflow as of
from ryu_app.core.balancer import Balancer, TableRequest
from ryu_app.core.effects import Effects
from ryu_app.core.floodguard import CONTROLLER, SWITCH, Guard
from ryu_app.core.flowkey import Flow, FrameError, flow_key, parse_frame
from ryu_app.core.flowtable import PINNED
from ryu_app.core.health import UP
from ryu_app.core.model import MODE_SWITCH, Gateway, Vip, service_key
from ryu_app.core.overload import LoadMonitor
from ryu_app.core.packets import (
    mac_bytes,
    neighbour_advertisement,
    parse_segment,
    parse_solicitation,
)
from ryu_app.core.prober import Prober, Send, Verdict
from ryu_app.core.retirement import Retirements
from ryu_app.core.slotsync import SlotRules

# A per-flow rule installed less than this long ago is taken to be in the switch: repeated
# packet-ins of a new connection (2-5 are normal) only get a packet-out.  A packet-in for a
# known flow after that means the rule is gone (switch reconnected, rule lost): install again.
RECENT_INSTALL_SECONDS = 2.0
# Flow-table entries looked at per health tick for those of backends that went down: well
# under a millisecond here, and a million entries are swept in ~4 s.
SWEEP_PER_TICK = 5_000
# A Maglev table whose build failed is asked for again after this long, doubled per failure
# of the same table, up to the maximum (then every maximum, for as long as the VIP wants it).
BUILD_RETRY_FIRST = 0.5
BUILD_RETRY_MAX = 60.0
PORT_EVENTS = {of.OFPPR_ADD: "added", of.OFPPR_DELETE: "deleted"}  # else: "changed"
# The switch's errors are counted by (type, code); each kind is logged at most once per this
# many seconds (a full flow table refuses every flow-mod of a flood), with what was left out.
ERROR_LOG_EVERY = 10.0
MAX_ERROR_KINDS = 64  # distinct (type, code) pairs counted; the rest as (-1, -1)


def build_retry_delay(attempt: int) -> float:
    """Seconds before the ``attempt``-th failed build of a table is tried again (from 1)."""
    return min(BUILD_RETRY_FIRST * 2 ** min(attempt - 1, 32), BUILD_RETRY_MAX)


def default_mac(dpid: int) -> str:
    """A locally administered MAC derived from the datapath id."""
    low = dpid & 0xFFFFFFFFFF
    return "02:" + ":".join(f"{(low >> shift) & 0xFF:02x}" for shift in range(32, -1, -8))


class RecentInstalls:
    """Flow keys whose rule was installed less than ``RECENT_INSTALL_SECONDS`` ago.

    Two generations of plain dicts, the older dropped whole when the newer is that old: O(1)
    per packet, and memory bounded by two windows' worth of new flows.  (A single dict trimmed
    from its oldest end costs a scan over every slot trimmed before, which grew to ~0.3 ms
    per new flow at 20k flows/s.)"""

    def __init__(self, window: float = RECENT_INSTALL_SECONDS):
        self.window = window
        self._new: dict[bytes, float] = {}
        self._old: dict[bytes, float] = {}
        self._started = float("-inf")  # when the newer generation began

    def add(self, key: bytes, now: float) -> None:
        if now - self._started > self.window:
            self._old, self._new, self._started = self._new, {}, now
        self._new[key] = now

    def contains(self, key: bytes, now: float) -> bool:
        installed = self._new.get(key)
        if installed is None:
            installed = self._old.get(key)
        return installed is not None and now - installed <= self.window

    def discard(self, key: bytes) -> None:
        self._new.pop(key, None)
        self._old.pop(key, None)

    def clear(self) -> None:
        self._new.clear()
        self._old.clear()

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


@dataclass
class GatewayCounters:
    packet_ins: int = 0
    malformed: Counter = field(default_factory=Counter)  # by FrameError reason
    foreign_port: int = 0  # VIP-looking traffic that did not come from the uplink
    flows_installed: int = 0
    packet_outs: int = 0
    flows_removed: int = 0
    reinstalls: int = 0
    probe_replies: int = 0  # TCP segments addressed to the gateway (answers to probes)
    neighbour_answers: int = 0
    table_build_failures: int = 0  # Maglev tables whose build raised (each is retried)
    switch_errors: Counter = field(default_factory=Counter)  # (type, code) -> errors received


class GatewayCore:
    """One gateway's decisions.  Start it with its VIPs (``set_vips``), then feed it the
    switch's events; each returns the ``Effects`` to apply."""

    def __init__(
        self,
        gateway: Gateway,
        balancer: Balancer | None = None,
        rng: random.Random | None = None,
    ):
        self.gateway = gateway
        self.mac = gateway.mac or default_mac(gateway.dpid)
        self.balancer = balancer or Balancer(entry_idle=PINNED)
        self.counters = GatewayCounters()
        self.ports: pipeline.Ports | None = None
        self.missing_ports: list[str] = []
        self._port_numbers: dict[str, int] | None = None  # the switch's ports, name -> number
        self._recent = RecentInstalls()
        self._build_failures: dict[TableRequest, int] = {}  # failed builds so far, per table
        self._retries: dict[str, tuple[float, TableRequest]] = {}  # VIP -> (when, what)
        own = [ipaddress.ip_address(a).packed for a in gateway.addresses]
        self._own = frozenset(own)
        self.monitor = LoadMonitor()  # the gateway's own evidence of overload (``overload``)
        self.prober = Prober(own, mac_bytes(self.mac), rng, self.monitor)
        self._retirements = Retirements()  # backends out of service, until their grace ends
        self.guard = Guard(gateway.flood_guard)
        self._drops_told: int | None = None  # the guard's drop count the monitor last had
        self._errors_logged: dict[tuple[int, int], tuple[float, int]] = {}  # at, left out
        self.slot_rules = SlotRules()  # switch-mode VIPs' slot rules in the switch
        self.pin_reader = pinread.PinReader()  # switch-mode pins and slot counters, read back

    # ---- switch life cycle ---------------------------------------------------------------

    def on_connect(self, now: float) -> Effects:
        """A switch connected: forget what it had, ask for its meters (the flood guard) and
        its ports (the answers come in that order)."""
        self.ports = None
        self._port_numbers = None
        self._recent.clear()
        self.slot_rules.forget()  # deleted below, with the pins (written again with the ports)
        messages = [pipeline.delete_own_flows(), *self.guard.on_connect()]
        return Effects([*messages, of.port_desc_request()])

    def on_disconnect(self, now: float) -> Effects:
        """The switch is gone: nothing can be sent or answered until it is back.  Probes in
        flight are forgotten without a verdict (their answers could not come back)."""
        self.ports = None
        self._port_numbers = None
        self._recent.clear()
        self.prober.abandon()
        return Effects(notices=["switch disconnected: probing paused until it is back"])

    def on_ports(self, port_numbers: dict[str, int], now: float) -> Effects:
        """The switch's ports (names -> numbers, its port description at connection): install
        the base pipeline and one punt per VIP once the uplink and tunnel ports are there."""
        self._port_numbers = dict(port_numbers)
        effects = Effects(self._follow_ports())
        if self.ports is None:
            missing, present = self.missing_ports, sorted(port_numbers)
            effects.errors.append(f"switch lacks port(s) {missing}; has {present}")
        else:
            uplink, tunnel = self.ports.uplink, self.ports.tunnel
            effects.notices.append(f"pipeline installed (uplink {uplink}, tunnel {tunnel})")
        return effects

    def on_port_status(self, reason: int, name: str, number: int, now: float) -> Effects:
        """A port was added, deleted or changed (``reason``: ``openflow.OFPPR_*``) after the
        connection.  The port map follows (a port renamed or renumbered loses its old entry);
        when the uplink or tunnel port appears, vanishes or changes number, so does the
        pipeline (``_follow_ports``).  Other ports change nothing."""
        if self._port_numbers is None:
            return Effects()  # the port description has not come yet: it will say
        numbers = {n: p for n, p in self._port_numbers.items() if p != number and n != name}
        if reason != of.OFPPR_DELETE:
            numbers[name] = number
        self._port_numbers = numbers
        before = self.ports
        effects = Effects(self._follow_ports())
        if self.ports != before:
            event = f"port {name} ({number}) {PORT_EVENTS.get(reason, 'changed')}"
            if self.ports is None:
                missing = ", ".join(self.missing_ports)
                effects.notices.append(
                    f"{event}: the switch lacks {missing}: pipeline removed, probing paused"
                )
            else:
                again = "re" if before else ""
                effects.notices.append(
                    f"{event}: pipeline {again}installed "
                    f"(uplink {self.ports.uplink}, tunnel {self.ports.tunnel})"
                )
        return effects

    def _follow_ports(self) -> list[bytes]:
        """Resolve the uplink and tunnel ports from the port map; if that changed anything,
        replace the pipeline.  Every rule of ours names a port number (the VIP punts and ARP
        responder match the uplink, per-flow rules send to the tunnel), so all go (one
        delete, by cookie) before the new ones; per-flow rules come back with their flows'
        next packet-ins (their flow-table entries stay: the backend choice does not depend on
        ports).  With a port missing nothing is left in the switch: a gateway that cannot
        forward also stops answering ARP, so the router stops sending to it.  Probes in
        flight are forgotten (they went out the old way); probing waits for the ports."""
        wanted = (self.gateway.uplink_port, self.gateway.tunnel_port)
        numbers = self._port_numbers or {}
        self.missing_ports = [name for name in wanted if name not in numbers]
        ports = None if self.missing_ports else pipeline.Ports(*(numbers[n] for n in wanted))
        if ports == self.ports:
            return []
        old, self.ports = self.ports, ports
        self._recent.clear()
        messages = []
        if old is not None:
            messages.append(pipeline.delete_own_flows())
            self.slot_rules.forget()
            self.prober.abandon()
        if ports is None:
            return messages
        return messages + self._pipeline_rules()

    def _pipeline_rules(self) -> list[bytes]:
        """The gateway's own rules and every VIP's, with the flood guard's meters if the
        switch has them (adding a rule again replaces it: same match and priority)."""
        guard, ports, addresses = self.guard, self.ports, self.gateway.addresses
        messages = pipeline.base_flows(
            addresses, self.mac, ports, guard.miss_meter, guard.probe_meter
        )
        for state in self.balancer.vips.values():
            vip = state.vip
            messages += pipeline.vip_flows(
                vip, addresses, ports.uplink, guard.meter_of(vip), guard.probe_meter
            )
            messages += self._follow_slots(vip.name)
        return messages

    def _follow_slots(self, name: str) -> list[bytes]:
        """The flow-mods that make the switch's slot rules of VIP ``name`` follow its table
        in use (``slotsync``): after anything that may have swapped the table in."""
        state = self.balancer.vips.get(name)
        if state is None or self.ports is None:
            return []
        if state.vip.mode != MODE_SWITCH and name not in self.slot_rules:
            return []  # (a controller-mode VIP's table is not looked at: up to 655k slots)
        owners = state.table.owners()
        return self.slot_rules.follow(state.vip, owners, state.backend_ids, self.ports)

    def _vips(self) -> list[Vip]:
        return [state.vip for state in self.balancer.vips.values()]

    # ---- configuration -------------------------------------------------------------------

    def set_vips(self, vips: list[Vip], now: float) -> Effects:
        """The deployment's VIPs, at start: ``set_vip`` of each."""
        effects = Effects()
        for vip in vips:
            effects += self.set_vip(vip, now)
        return effects

    def set_vip(self, vip: Vip, now: float) -> Effects:
        """Add or replace a VIP.  Backends that stay keep their flows and health; the rules of
        backends that went (or changed tunnel or MAC) are deleted from the switch."""
        old = self.balancer.vips.get(vip.name)
        old_ids = set(old.backend_ids.values()) if old else set()
        before = (old.out_of_service(), old.panic) if old else (set(), False)
        effects = Effects(tables=self.balancer.set_vip(vip))
        state = self.balancer.vips[vip.name]
        self.prober.set_vip(vip, state.healthy, now)
        effects += self._retirements.follow(state, before, now)
        effects.notices.append(
            f"VIP {vip.name} {'replaced' if old else 'added'}: {vip.protocol} "
            f"{vip.address} port {vip.port}, {len(vip.backends)} backend(s)"
        )
        messages = effects.messages
        messages += self.guard.sync(self._vips())  # a meter before the rule that names it
        if self.ports is None:  # (meters name no port: they follow the VIPs all the same)
            return effects
        for backend_id in old_ids - set(state.backend_ids.values()):
            messages.append(pipeline.delete_backend_flows(backend_id))
        addresses, uplink, guard = self.gateway.addresses, self.ports.uplink, self.guard
        if old and service_key(old.vip) != service_key(vip):
            messages += pipeline.remove_vip_flows(old.vip, addresses, uplink)
        messages += pipeline.vip_flows(
            vip, addresses, uplink, guard.meter_of(vip), guard.probe_meter
        )
        messages += self._follow_slots(vip.name)
        return effects

    def remove_vip(self, name: str, now: float) -> Effects:
        state = self.balancer.vips.get(name)
        if state is None:
            raise KeyError(name)
        self.balancer.remove_vip(name)
        self.prober.remove_vip(name)
        self._retirements.forget_vip(name)
        effects = Effects(notices=[f"VIP {name} removed"])
        if self.ports is not None:
            addresses, uplink = self.gateway.addresses, self.ports.uplink
            effects.messages += pipeline.remove_vip_flows(state.vip, addresses, uplink)
            ids = state.backend_ids.values()
            effects.messages += [pipeline.delete_backend_flows(i) for i in ids]
        effects.messages += self.slot_rules.remove(name, self.ports)
        effects.messages += self.guard.sync(self._vips())  # its meter after the rule naming it
        return effects

    # ---- the packet path -----------------------------------------------------------------

    def on_messages(self, messages: list[bytes], now: float) -> Effects:
        """A burst of raw OpenFlow messages from the switch: packet-ins and flow-removeds from
        the fast lane; meter replies and errors (the shell hands them over as received).  The
        answers, in order, in one ``Effects``.  A message that does not frame is counted and
        dropped."""
        effects = Effects()
        packet_ins = self.counters.packet_ins
        for message in messages:
            msg_type = message[1]
            try:
                if msg_type == of.OFPT_PACKET_IN:
                    buffer_id, in_port, data = of.parse_packet_in(message)
                    self._packet_in(in_port, buffer_id, data, now, effects)
                elif msg_type == of.OFPT_FLOW_REMOVED:
                    cookie, reason, flow = of.parse_flow_removed(message)
                    self._flow_removed(cookie, flow, reason)
                elif msg_type == ofmeter.OFPT_MULTIPART_REPLY:
                    self._multipart_reply(message, effects)
                elif msg_type == ofmeter.OFPT_ERROR:
                    self._switch_error(ofmeter.parse_error(message), now, effects)
            except of.WireError as error:
                self.counters.packet_ins += msg_type == of.OFPT_PACKET_IN
                self.counters.malformed[error.reason] += 1
        self.monitor.packet_ins(self.counters.packet_ins - packet_ins, now)
        if effects.tables:  # probe answers' verdicts
            effects.tables = self.wanted_tables(effects.tables)
        return effects

    def _packet_in(
        self, in_port: int, buffer_id: int, data: bytes, now: float, effects: Effects
    ) -> None:
        self.counters.packet_ins += 1
        ports = self.ports
        if ports is None:
            return
        try:
            flow = parse_frame(data)
        except FrameError as error:
            neighbour = error.reason == "not-tcp-udp" and in_port == ports.uplink
            if neighbour and self._neighbour_answer(in_port, data, effects):
                return
            self.counters.malformed[error.reason] += 1
            return
        if in_port != ports.uplink:
            self.counters.foreign_port += 1
            return
        if flow.dst in self._own:
            self._probe_answer(data, now, effects)
            return
        if self.guard.mode == CONTROLLER and not self.guard.admit(now):
            return  # no meters in the switch: the controller's bucket (counted there)
        decision = self.balancer.pick(flow, now)
        if decision is None:
            return
        vip, backend = decision.vip, decision.backend
        # The two messages of a new flow; the backend's actions are encoded once (cached).
        actions = pipeline.backend_actions(backend.mac, backend.tunnel_ip, vip.vni, ports.tunnel)
        messages = effects.messages
        key = decision.key
        if not self._recent.contains(key, now):
            if decision.from_table:
                self.counters.reinstalls += 1
            messages.append(
                pipeline.flow_rule(flow, vip, decision.backend_id, actions, ports.uplink)
            )
            self.counters.flows_installed += 1
            self._recent.add(key, now)
        messages.append(of.packet_out(in_port, buffer_id, actions, data))
        self.counters.packet_outs += 1

    def _flow_removed(self, cookie: int, flow: Flow | None, reason: int) -> None:
        """The switch expired a per-flow rule (``flow``: what its match names): the flow is
        over, forget it here too.

        Rules we deleted ourselves are not a flow's end: a backend that went down has had its
        entries dropped already, and the rules deleted at a switch's (re)connection belong to
        flows that may still be running (their next packet-in reinstalls them, pinned by the
        entry that stays here)."""
        if reason == of.OFPRR_DELETE or pipeline.backend_of_cookie(cookie) is None:
            return
        state = self.balancer.match(flow) if flow else None
        if state is None:
            return
        key = flow_key(flow, state.vip.hash)
        self.balancer.flows.remove(key)
        self._recent.discard(key)
        self.counters.flows_removed += 1

    def _neighbour_answer(self, in_port: int, data: bytes, effects: Effects) -> bool:
        """Answer a neighbour solicitation for one of the gateway's addresses (True)."""
        solicitation = parse_solicitation(data)
        if solicitation is None or solicitation.target not in self._own:
            return False
        self.counters.neighbour_answers += 1
        frame = neighbour_advertisement(solicitation, mac_bytes(self.mac))
        effects.messages.append(of.controller_packet_out(of.output(in_port), frame))
        return True

    def _probe_answer(self, data: bytes, now: float, effects: Effects) -> None:
        try:
            segment = parse_segment(data)
        except FrameError as error:
            self.counters.malformed[error.reason] += 1
            return
        self.counters.probe_replies += 1
        sends, verdicts = self.prober.on_segment(segment, now)
        effects.messages += self._probe_packets(sends)
        self._take_verdicts(verdicts, now, effects)

    # ---- the flood guard and the switch's own reports --------------------------------------

    def _multipart_reply(self, message: bytes, effects: Effects) -> None:
        kind = ofmeter.multipart_kind(message)
        if kind == ofmeter.OFPMP_METER_FEATURES:
            features = ofmeter.parse_meter_features(message)
            effects.messages += self.guard.on_features(features, self._vips())
            self._guard_ready(effects)
        elif kind == ofmeter.OFPMP_METER:
            self.guard.on_stats(ofmeter.parse_meter_stats(message))
        elif kind in pinread.REPLY_KINDS:
            effects.messages += self.pin_reader.on_reply(message)

    def _guard_ready(self, effects: Effects) -> None:
        """The guard knows where it runs: say so, and give rules already in the switch their
        meters."""
        guard, config = self.guard, self.guard.config
        if guard.mode == SWITCH:
            effects.notices.append(
                f"flood guard in the switch: {config.rate} new connections/s to the controller"
                f" (burst {config.burst}), probe answers in a budget of their own"
            )
            if self.ports is not None:
                effects.messages += self._pipeline_rules()
        elif guard.mode == CONTROLLER:
            effects.errors.append(
                "the switch has no meters that drop by packet rate: the flood guard runs in the"
                f" controller only ({config.rate} new connections/s); a flood still reaches"
                " the controller: set the switch's controller rate limit (Open vSwitch:"
                " ovs-vsctl set controller BRIDGE controller_rate_limit=RATE)"
            )

    def _switch_error(self, error: ofmeter.SwitchError, now: float, effects: Effects) -> None:
        """The switch refused a message: counted by (type, code), logged at a bounded rate.
        A refused meter features request means a switch without meters; a refused meter, one
        whose meters cannot be trusted: either way the guard falls back to the controller."""
        kind = (error.type, error.code)
        if (
            kind not in self.counters.switch_errors
            and len(self.counters.switch_errors) >= MAX_ERROR_KINDS
        ):
            kind = (-1, -1)
        self.counters.switch_errors[kind] += 1
        if ofmeter.refused_multipart_kind(error) == ofmeter.OFPMP_METER_FEATURES:
            if self.guard.features is None:
                self.guard.no_features()
                self._guard_ready(effects)
            return
        if error.refused_type == ofmeter.OFPT_METER_MOD and self.guard.mode == SWITCH:
            self.guard.no_features()
            effects.errors.append(
                f"the switch refused a meter (error type {error.type} code {error.code})"
            )
            self._guard_ready(effects)
            if self.ports is not None:  # the rules again, naming no meter
                effects.messages += self._pipeline_rules()
        logged_at, left_out = self._errors_logged.get(kind, (None, 0))
        if logged_at is not None and now - logged_at < ERROR_LOG_EVERY:
            self._errors_logged[kind] = (logged_at, left_out + 1)
            return
        self._errors_logged[kind] = (now, 0)
        more = f"; {left_out} more like it in the last {ERROR_LOG_EVERY:g} s" if left_out else ""
        effects.errors.append(
            f"the switch refused a message (type {error.refused_type}): error type"
            f" {error.type} code {error.code}{more}"
        )

    # ---- health --------------------------------------------------------------------------

    def health_tick(self, now: float, lag: float = 0.0) -> Effects:
        """Every 20 ms (``lag``: how late this one is): time out late probes, start due ones,
        retire backends whose grace ended, sweep a slice of the flow table for entries of
        retired backends, ask again for failed builds due for a retry, and say when an
        overload episode starts or ends."""
        self.balancer.flows.sweep(SWEEP_PER_TICK)
        self.monitor.loop_lag(lag, now)
        self.monitor.packet_ins(0, now)
        effects = Effects()
        if self._retries:
            self._retries_due(now, effects)
        self._take_verdicts(self.prober.expire(now), now, effects)
        self._retire_due(now, effects)
        if self.ports is not None:  # probes travel through the switch; meters guard rules
            effects.messages += self._probe_packets(self.prober.due(now))
            effects.messages += self.guard.tick(now)
            effects.messages += self.pin_reader.due(now, self.balancer.vips)
        dropped = self.guard.counters.dropped_clients
        if dropped != self._drops_told:  # (the first tick's count is the monitor's baseline)
            self.monitor.guard_drops(dropped, now)
            self._drops_told = dropped
        notices, warnings = self.monitor.tick(now)
        effects.notices += notices
        effects.warnings += warnings
        if effects.tables:  # expired probes' verdicts, retries
            effects.tables = self.wanted_tables(effects.tables)
        return effects

    def _probe_packets(self, sends: list[Send]) -> list[bytes]:
        messages = []
        for send in sends:
            state = self.balancer.vips.get(send.vip)
            backend = state.vip.backend(send.backend) if state else None
            if backend is None or self.ports is None:
                continue
            vni, tunnel = state.vip.vni, self.ports.tunnel
            actions = pipeline.backend_actions(backend.mac, backend.tunnel_ip, vni, tunnel)
            messages.append(of.controller_packet_out(actions, send.frame))
        return messages

    def _take_verdicts(self, verdicts: list[Verdict], now: float, effects: Effects) -> None:
        """Apply a burst of verdicts.  Each asks for its VIP's table; the entry points keep
        the last one per VIP (``wanted_tables``: ``on_messages``, ``health_tick``), so a burst
        asks for at most one table per VIP, not one per verdict."""
        for verdict in verdicts:
            transition = verdict.transition
            effects.notices.append(
                f"backend {verdict.backend} of VIP {verdict.vip} is {transition.state.upper()}"
                f" ({transition.reason})"
            )
            effects += self.set_health(verdict.vip, verdict.backend, transition.state == UP, now)

    def set_health(self, vip_name: str, backend_name: str, healthy: bool, now: float) -> Effects:
        """This gateway's own verdict on a backend.  Either way the Maglev table of the VIP's
        new serving set is asked for.  Down: no new flows at once, but its established flows
        keep their rules until its grace ends (``retirement``)."""
        state = self.balancer.vips[vip_name]
        before = state.out_of_service(), state.panic
        effects = Effects(tables=self.balancer.set_health(vip_name, backend_name, healthy))
        effects.messages += self._follow_slots(vip_name)  # the table may have come from cache
        return effects + self._retirements.follow(state, before, now)

    def wanted_tables(self, requests: list[TableRequest]) -> list[TableRequest]:
        """Of ``requests``, the last of each VIP, if the VIP still wants it: what is worth
        building (a burst of health changes must not become a burst of builds)."""
        latest = {request.vip: request for request in requests}
        return [request for request in latest.values() if self.balancer.wants(request)]

    def _retire_due(self, now: float, effects: Effects) -> None:
        """Backends still out of service when their grace ended (``retirement``): their
        flows' rules go from the switch (one message, by cookie), their entries from the table."""
        for vip, backend, backend_id in self._retirements.retire_due(self.balancer, now):
            if self.ports is not None:
                effects.messages.append(pipeline.delete_backend_flows(backend_id))
            effects.notices.append(
                f"backend {backend} of VIP {vip} still down after its grace: "
                "its flows' rules deleted, its flows re-hashed"
            )

    # ---- Maglev tables built by the shell -------------------------------------------------

    def table_built(self, request: TableRequest, table) -> Effects:
        """A table asked for in an ``Effects`` was built: swap it in (unless the VIP changed
        meanwhile: then it waits for the table asked for by that change)."""
        self._build_failures.pop(request, None)
        if not self.balancer.install_table(request, table):
            return Effects()
        backends = len(request.spec.backends)
        return Effects(
            self._follow_slots(request.vip),
            notices=[f"VIP {request.vip}: Maglev table rebuilt ({backends} backends)"],
        )

    def table_build_failed(self, request: TableRequest, error: Exception, now: float) -> Effects:
        """Building a table raised ``error``: it is asked for again (by ``health_tick``) after
        a delay that doubles with each failure of the same table (``build_retry_delay``),
        unless the VIP no longer wants it by then."""
        self.counters.table_build_failures += 1
        failures = self._build_failures[request] = self._build_failures.get(request, 0) + 1
        delay = build_retry_delay(failures)
        self._retries[request.vip] = (now + delay, request)  # one per VIP: the latest
        return Effects(
            errors=[
                f"building the Maglev table of VIP {request.vip} failed ({failures} time(s)): "
                f"{error!r}; asking again in {delay:g} s if the VIP still wants it"
            ]
        )

    def _retries_due(self, now: float, effects: Effects) -> None:
        due = [request for at, request in self._retries.values() if at <= now]
        for request in due:
            del self._retries[request.vip]
            if self.balancer.wants(request):
                effects.tables.append(request)
            else:  # the VIP changed (its new table was asked for then), is gone, or has it
                self._build_failures.pop(request, None)
                effects.notices.append(f"VIP {request.vip}: retry of a failed build dropped")
