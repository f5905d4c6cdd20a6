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

from ryu_app.core import ofmeter, pinread, pipeline
from ryu_app.core import openflow as of
from ryu_app.core.balancer import Balancer, SavedIds, TableRequest
from ryu_app.core.buildretries import BuildRetries
from ryu_app.core.effects import Effects
from ryu_app.core.floodguard import CONTROLLER, SWITCH, Guard
from ryu_app.core.flowkey import Flow, FrameError, flow_key, parse_frame
from ryu_app.core.flowtable import PINNED
from ryu_app.core.gatewaycounters import GatewayCounters
from ryu_app.core.health import UP
from ryu_app.core.model import (
    MODE_SWITCH,
    SECOND_CHANCE_DUPLICATE,
    Gateway,
    Vip,
    gateway_mode,
    service_key,
)
from ryu_app.core.overload import LoadMonitor
from ryu_app.core.ownpackets import neighbour_answer, probe_packets
from ryu_app.core.packets import mac_bytes, parse_segment
from ryu_app.core.prober import Prober, Send, Verdict
from ryu_app.core.recentinstalls import RecentInstalls
from ryu_app.core.retirement import Retirements
from ryu_app.core.secondchance import Record, undo_rules
from ryu_app.core.serving import panic_line
from ryu_app.core.slotsync import SlotRules
from ryu_app.core.switchports import after_status, change_notice, resolve
from ryu_app.core.switchreports import SwitchErrorLog, guard_ready_lines

# Flow-table entries looked at per health tick for those of backends that went down: well
# under a millisecond here, and a million entries are swept in ~4 s.
SWEEP_PER_TICK = 5_000


def default_mac(dpid: int) -> str:
    """A locally administered MAC derived from the datapath id."""
    low = dpid & 0xFFFFFFFFFF
    return "02:" + ":".join(f"{(low >> shift) & 0xFF:02x}" for shift in range(32, -1, -8))


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
        # The ports the per-flow rules (and pins) in the switch were made for; None: not known
        # (this run has not seen the switch: an earlier run's rules may be there).
        self._flow_ports: pipeline.Ports | None = None
        self._recent = RecentInstalls()
        self._retries = BuildRetries()  # tables whose build failed, asked for again later
        own = [ipaddress.ip_address(a).packed for a in gateway.addresses]
        self._own = frozenset(own)
        self.monitor = LoadMonitor()  # the gateway's own evidence of overload (``overload``)
        self.prober = Prober(own, mac_bytes(self.mac), rng, self.monitor)
        self._retirements = Retirements()  # backends out of service, until their grace ends
        self.guard = Guard(gateway.flood_guard)
        self._drops_told: int | None = None  # the guard's drop count the monitor last had
        self._errors = SwitchErrorLog(self.counters.switch_errors)
        self.slot_rules = SlotRules()  # switch-mode VIPs' slot rules in the switch
        self.pin_reader = pinread.PinReader()  # switch-mode pins and slot counters, read back
        # Whether the cookies of the per-flow rules a switch holds name this run's backends
        # (ids restored from the state file, or a connection seen already).
        self._flow_cookies_known = False
        self._rounds_told = 0  # the pin reader's rounds whose SYN delta the monitor had

    # ---- switch life cycle ---------------------------------------------------------------

    def restore_ids(self, saved: SavedIds) -> None:
        """An earlier run's backend ids (the state file's), before ``set_vips``: the per-flow
        rules the switch kept carry them, so they are kept at the first connection too."""
        self.balancer.restore_ids(saved)
        self._flow_cookies_known = True

    def on_connect(self, now: float) -> Effects:
        """A switch connected: delete the rules written again once its ports are known, ask
        for its meters (the flood guard) and its ports (the answers come in that order).
        Per-flow rules and switch mode's pins stay: they go on sending established flows to
        their VMs (a pin learned while the controller was away included) and idle out by
        themselves; those naming a port that moved go with the ports (``_follow_ports``),
        those of restored ids no backend took back go now.  A run started without saved ids
        deletes all at its first connection: their ids may name other backends now."""
        self.ports = None
        self._port_numbers = None
        self._recent.clear()
        self.slot_rules.forget()  # deleted below (written again with the ports)
        if self._flow_cookies_known:
            messages = pipeline.delete_rewritten_flows()
            messages += map(pipeline.delete_backend_flows, self.balancer.release_unclaimed_ids())
        else:
            messages = [pipeline.delete_own_flows()]
            self._flow_cookies_known = True
        messages += self.guard.on_connect()
        return Effects([*messages, of.port_desc_request()])

    def on_disconnect(self, now: float) -> Effects:
        """The switch is gone: nothing can be sent or answered until it is back.  Probes in
        flight are forgotten without a verdict (their answers could not come back)."""
        self.ports = None
        self._port_numbers = None
        self._recent.clear()
        self.prober.abandon()
        self.pin_reader.forget()  # a read in flight cannot be answered now
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
        self._port_numbers = after_status(self._port_numbers, reason, name, number)
        before = self.ports
        effects = Effects(self._follow_ports())
        if self.ports != before:
            notice = change_notice(reason, name, number, before, self.ports, self.missing_ports)
            effects.notices.append(notice)
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
        names = self.gateway.uplink_port, self.gateway.tunnel_port
        ports, self.missing_ports = resolve(self._port_numbers or {}, *names)
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
        messages += self._stale_flow_deletes(ports)
        return messages + self._pipeline_rules()

    def _stale_flow_deletes(self, ports: pipeline.Ports) -> list[bytes]:
        """The per-flow rules kept over a reconnection that name a port number the pipeline
        no longer uses (the uplink or tunnel port renumbered while the controller was away).
        Known ports: exactly the old numbers, if they differ.  Not known (this run's first
        sight of the switch): every other port the switch has, so a number now taken by
        another port is cleared; one now unused is left (its rules drop until they idle)."""
        known, self._flow_ports = self._flow_ports, ports
        if known is not None:
            return pipeline.stale_flow_deletes(ports, [known.uplink], [known.tunnel])
        present = list((self._port_numbers or {}).values())
        return pipeline.stale_flow_deletes(ports, present, present)

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
        """Add or replace a VIP (in the gateway's ``vip_mode``, if it has one: ``gateway_mode``).
        Backends that stay keep their flows and health; the rules of backends that went (or
        changed tunnel or MAC) are deleted from the switch."""
        vip = gateway_mode(vip, self.gateway)
        old = self.balancer.vips.get(vip.name)
        old_ids = set(old.backend_ids.values()) if old else set()
        before = (old.out_of_service(), old.panic) if old else (set(), False)
        effects = Effects(tables=self.balancer.set_vip(vip, now))
        state = self.balancer.vips[vip.name]
        self.prober.set_vip(vip, state.healthy, now)
        effects += self._serving_changed(state, before, now)
        effects.notices.append(
            f"VIP {vip.name} {'replaced' if old else 'added'}: {vip.protocol} "
            f"{vip.address} port {vip.port}, {len(vip.backends)} backend(s)"
        )
        messages = effects.messages
        gone = frozenset(old_ids - set(state.backend_ids.values()))
        every = vip.second_chance != SECOND_CHANCE_DUPLICATE or vip.mode == MODE_SWITCH
        messages += self._undo_duplicates(
            self.balancer.second_chance.undo(vip.name, gone, every), now
        )
        messages += self.guard.sync(self._vips())  # a meter before the rule that names it
        if self.ports is None:  # (meters name no port: they follow the VIPs all the same)
            return effects
        for backend_id in gone:
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
        self.balancer.second_chance.undo(name, every=True)  # (their rules go with the VIP's)
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
        if decision.undo:  # it had a duplicating rule: that goes, a rule of one backend comes
            messages.append(pipeline.delete_duplicating_rule(flow, ports.uplink))
            self._recent.discard(key)
        rule = pipeline.flow_rule
        if decision.extra:  # second chance: the earlier owners get it too
            rule = pipeline.duplicating_rule
            for other, _ in decision.extra:
                actions += pipeline.backend_actions(
                    other.mac, other.tunnel_ip, vip.vni, ports.tunnel
                )
        if not self._recent.contains(key, now):
            if decision.from_table:
                self.counters.reinstalls += 1
            messages.append(rule(flow, vip, decision.backend_id, actions, ports.uplink))
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
        self.balancer.forget_flow(key)
        self._recent.discard(key)
        self.counters.flows_removed += 1

    def _neighbour_answer(self, in_port: int, data: bytes, effects: Effects) -> bool:
        """Answer a neighbour solicitation for one of the gateway's addresses (True)."""
        answer = neighbour_answer(in_port, data, self._own, self.mac)
        if answer is not None:
            self.counters.neighbour_answers += 1
            effects.messages.append(answer)
        return answer is not None

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
        notices, errors = guard_ready_lines(self.guard)
        effects.notices += notices
        effects.errors += errors
        if self.guard.mode == SWITCH and self.ports is not None:
            effects.messages += self._pipeline_rules()

    def _switch_error(self, error: ofmeter.SwitchError, now: float, effects: Effects) -> None:
        """The switch refused a message: counted by (type, code), logged at a bounded rate.
        A refused meter features request means a switch without meters; a refused meter, one
        whose meters cannot be trusted: either way the guard falls back to the controller."""
        kind = self._errors.count(error)
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
        line = self._errors.line(kind, error, now)
        if line is not None:
            effects.errors.append(line)

    # ---- health --------------------------------------------------------------------------

    def health_tick(self, now: float, lag: float = 0.0) -> Effects:
        """Every 20 ms (``lag``: how late this one is): time out late probes, start due ones,
        retire backends whose grace ended, sweep a slice of the flow table for entries of
        retired backends, let go of replaced tables past their second-chance window, ask again
        for failed builds due for a retry, and say when an overload episode starts or ends."""
        self.balancer.flows.sweep(SWEEP_PER_TICK)
        self.balancer.expire_history(now)
        self.monitor.loop_lag(lag, now)
        self.monitor.packet_ins(0, now)
        effects = Effects()
        if self._retries:
            effects += self._retries.due(now, self.balancer.wants)
        unanswered = self.monitor.unanswered
        self._take_verdicts(self.prober.expire(now), now, effects)
        if self.monitor.unanswered != unanswered:  # switch mode: is a flood why? (``hurry``)
            self.pin_reader.hurry(now)
        self._retire_due(now, effects)
        if self.ports is not None:  # probes travel through the switch; meters guard rules
            effects.messages += self._probe_packets(self.prober.due(now))
            effects.messages += self.guard.tick(now)
            effects.messages += self.pin_reader.due(now, self.balancer.vips)
        dropped = self.guard.counters.dropped_clients
        if dropped != self._drops_told:  # (the first tick's count is the monitor's baseline)
            self.monitor.guard_drops(dropped, now)
            self._drops_told = dropped
        if self.pin_reader.counters.rounds != self._rounds_told:  # switch mode's SYN rate
            self._rounds_told = self.pin_reader.counters.rounds
            if self.pin_reader.syn_delta is not None:
                self.monitor.switch_syns(*self.pin_reader.syn_delta, now)
        notices, warnings = self.monitor.tick(now)
        effects.notices += notices
        effects.warnings += warnings
        if effects.tables:  # expired probes' verdicts, retries
            effects.tables = self.wanted_tables(effects.tables)
        return effects

    def _probe_packets(self, sends: list[Send]) -> list[bytes]:
        if self.ports is None:
            return []
        return probe_packets(sends, self.balancer.vips, self.ports.tunnel)

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
        effects = Effects(tables=self.balancer.set_health(vip_name, backend_name, healthy, now))
        effects.messages += self._follow_slots(vip_name)  # the table may have come from cache
        return effects + self._serving_changed(state, before, now)

    def _serving_changed(self, state, before: tuple[set[str], bool], now: float) -> Effects:
        """After a change of a VIP's serving set (``before``: its out-of-service backends and
        panic until then): the graces of backends that left or came back (``retirement``),
        and a WARNING when the VIP enters or leaves panic."""
        out_before, panic_before = before
        effects = self._retirements.follow(state, out_before, now)
        if state.panic != panic_before:
            effects.warnings.append(panic_line(state.vip, state.healthy, state.panic))
        return effects

    def wanted_tables(self, requests: list[TableRequest]) -> list[TableRequest]:
        """Of ``requests``, the last of each VIP, if the VIP still wants it: what is worth
        building (a burst of health changes must not become a burst of builds)."""
        latest = {request.vip: request for request in requests}
        return [request for request in latest.values() if self.balancer.wants(request)]

    def _retire_due(self, now: float, effects: Effects) -> None:
        """Backends still out of service when their grace ended (``retirement``): their
        flows' rules go from the switch (one message, by cookie), their entries from the table."""
        for vip, backend, backend_id in self._retirements.retire_due(self.balancer, now):
            undone = self.balancer.second_chance.undo(vip, frozenset({backend_id}))
            effects.messages += self._undo_duplicates(undone, now)
            if self.ports is not None:
                effects.messages.append(pipeline.delete_backend_flows(backend_id))
            effects.notices.append(
                f"backend {backend} of VIP {vip} still down after its grace: "
                "its flows' rules deleted, its flows re-hashed"
            )

    def _undo_duplicates(self, undone: list[tuple[bytes, Record]], now: float) -> list[bytes]:
        """Flows that stop being duplicated (their VIP turned second chance off, or an owner
        left or was retired): their rules (``secondchance.undo_rules``)."""
        if self.ports is None:
            return []
        balancer = self.balancer
        messages, rewritten = undo_rules(undone, balancer.vips, balancer.held_backend, self.ports)
        for key in rewritten:
            self._recent.add(key, now)
        return messages

    # ---- Maglev tables built by the shell -------------------------------------------------

    def table_built(self, request: TableRequest, table, now: float) -> Effects:
        """A table asked for in an ``Effects`` was built: swap it in (unless the VIP changed
        meanwhile: then it waits for the table asked for by that change)."""
        self._retries.built(request)
        if not self.balancer.install_table(request, table, now):
            return Effects()
        backends = len(request.spec.backends)
        return Effects(
            self._follow_slots(request.vip),
            notices=[f"VIP {request.vip}: Maglev table rebuilt ({backends} backends)"],
        )

    def table_build_failed(self, request: TableRequest, error: Exception, now: float) -> Effects:
        """Building a table raised ``error``: it is asked for again (by ``health_tick``) after
        a delay that doubles with each failure of the same table (``buildretries``),
        unless the VIP no longer wants it by then."""
        self.counters.table_build_failures += 1
        return self._retries.failed(request, error, now)
