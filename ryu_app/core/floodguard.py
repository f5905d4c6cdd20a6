"""The flood guard: how many packets a gateway's switch lets through to its controller.

A client flood (SYNs from random sources) makes a packet-in of every packet.  Unbounded, it
fills the switch's packet-in queue (Open vSwitch: 100 packets per connection, the rest lost)
and its main thread, and the answers to health probes, which share that path, are lost with
the SYNs: the controller then blames the VMs for its own overload.  So the switch itself
limits what reaches the controller, with OpenFlow meters (Katran's new-connection-rate guard,
OVS's ``controller_rate_limit``, in the switch's own datapath):

- meter ``GATEWAY_METER`` (``Gateway.flood_guard``: rate and burst, packets per second): the
  punt of new connections of every VIP without a budget of its own, and the table miss;
- one meter per VIP with ``new_flow_rate`` (ids from ``FIRST_VIP_METER``, kept per VIP name);
- meter ``PROBE_METER``: answers to health probes and neighbour solicitations, in a budget of
  their own sized from the probes this gateway sends (``probe_budget``), so that a client flood
  cannot starve them, and a flood aimed at the probes' path cannot starve the clients.

At every connection the guard asks the switch for its meter features; a switch that has no
meters dropping by packet rate (``MeterFeatures.can_guard``) gets the rules without meters, a
WARNING, and the controller's own token bucket (``TokenBucket``) as the only guard: it spares
the switch the flow-mods and packet-outs of what it drops, not the packet-ins.  The meters'
drop counts are polled every ``STATS_INTERVAL`` and exported; a rising count is a flood in
progress (the health checks' overload evidence).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ryu_app.core import ofmeter
from ryu_app.core.model import FloodGuard, Vip

GATEWAY_METER = 1
PROBE_METER = 2
FIRST_VIP_METER = 16
STATS_INTERVAL = 1.0  # seconds between two polls of the meters' statistics
# Answers a probe may bring back (SYN-ACK; an HTTP check's response segments and FIN), and
# the headroom over the probes' own rate: probe answers must never be the ones dropped.
ANSWERS_PER_PROBE = 4
PROBE_HEADROOM = 4
MIN_PROBE_RATE = 200  # packets/s: neighbour solicitations and a few probes at any rate

SWITCH, CONTROLLER, OFF = "switch", "controller", "off"  # where the guard runs
MODES = (SWITCH, CONTROLLER, OFF)


def probe_budget(vips: list[Vip]) -> int:
    """Packets/s of probe answers (and neighbour solicitations) the switch lets through."""
    probes = sum(len(vip.backends) / vip.health.interval for vip in vips if vip.probed)
    return max(MIN_PROBE_RATE, round(probes * ANSWERS_PER_PROBE * PROBE_HEADROOM))


@dataclass
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; pure (it is given ``now``)."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float | None = None

    def admit(self, now: float) -> bool:
        if self.at is None:
            self.tokens, self.at = self.burst, now
        elif now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class GuardCounters:
    """What the guard dropped since the controller started; every count only goes up (the
    switch's own counts start again with each meter it is given, see ``Guard.on_stats``)."""

    switch_dropped: dict[int, int] = field(default_factory=dict)  # meter id -> packets
    retired_dropped: int = 0  # client packets dropped by meters since deleted
    controller_dropped: int = 0  # client packet-ins the controller's bucket dropped

    @property
    def clients_dropped_in_switch(self) -> int:
        live = sum(n for meter, n in self.switch_dropped.items() if meter != PROBE_METER)
        return live + self.retired_dropped

    @property
    def dropped_clients(self) -> int:
        """Client packets the guard dropped so far, in the switch (every meter but the
        probes') and in the controller: the overload monitor's evidence of a flood."""
        return self.clients_dropped_in_switch + self.controller_dropped


class Guard:
    """One gateway's flood guard: the meters it wants in the switch, the ones it has asked
    for, and the controller's bucket for a switch without meters."""

    def __init__(self, config: FloodGuard):
        self.config = config
        self.features: ofmeter.MeterFeatures | None = None  # None: not known yet
        self.vip_meters: dict[str, int] = {}  # VIP name -> its own meter
        self.installed: dict[int, tuple[int, int]] = {}  # meter id -> (rate, burst) asked for
        self.counters = GuardCounters()
        self._seen: dict[int, int] = {}  # meter id -> the switch's last count of its drops
        self.bucket = TokenBucket(config.rate, max(config.burst, 1))
        self._next_stats = 0.0
        self.mode = self._mode()  # kept current: the packet path reads it per packet-in

    def _mode(self) -> str:
        if self.config.rate == 0:
            return OFF
        return SWITCH if self.features is not None and self.features.can_guard else CONTROLLER

    def on_connect(self) -> list[bytes]:
        """A switch connected (meters of an earlier connection are deleted once it says it
        has meters): ask what it can do."""
        self.features, self.installed, self._seen = None, {}, {}
        self.mode = self._mode()
        return [ofmeter.meter_features_request()] if self.config.rate else []

    def on_features(self, features: ofmeter.MeterFeatures, vips: list[Vip]) -> list[bytes]:
        """The switch's meter features: with meters, delete any left over and add ours."""
        self.features = features
        self.mode = self._mode()
        if self.mode != SWITCH:
            return []
        return [ofmeter.meter_mod(ofmeter.OFPMC_DELETE, ofmeter.OFPM_ALL)] + self.sync(vips)

    def no_features(self) -> None:
        """The switch refused the meter features request (it has no meters), or one of our
        meters: the guard falls back to the controller's bucket (the caller sends the rules
        again, without meters: a rule naming a meter the switch refused would be refused too,
        and with it every new connection)."""
        self.features = ofmeter.MeterFeatures(0, 0, 0, 0)
        self.installed, self._seen, self.vip_meters = {}, {}, {}
        self.mode = self._mode()

    def sync(self, vips: list[Vip]) -> list[bytes]:
        """Meter-mods that bring the switch's meters to what ``vips`` need (before any rule
        that names a new meter is sent: the caller puts these first)."""
        if self.mode != SWITCH:
            return []
        wanted = self._wanted(vips)
        messages = []
        capabilities = self.features.capabilities
        stats = bool(capabilities & ofmeter.OFPMF_STATS)
        bursts = bool(capabilities & ofmeter.OFPMF_BURST)  # only flags the switch has: an
        for meter_id, (rate, burst) in sorted(wanted.items()):  # unknown one refuses the meter
            known = self.installed.get(meter_id)
            if known != (rate, burst):
                command = ofmeter.OFPMC_ADD if known is None else ofmeter.OFPMC_MODIFY
                size = burst if bursts else 0
                messages.append(ofmeter.meter_mod(command, meter_id, rate, size, stats))
        for meter_id in sorted(set(self.installed) - set(wanted)):
            messages.append(ofmeter.meter_mod(ofmeter.OFPMC_DELETE, meter_id))
            self._seen.pop(meter_id, None)
            dropped = self.counters.switch_dropped.pop(meter_id, 0)
            self.counters.retired_dropped += dropped if meter_id != PROBE_METER else 0
        self.installed = wanted
        return messages

    def _wanted(self, vips: list[Vip]) -> dict[int, tuple[int, int]]:
        config = self.config
        probes = probe_budget(vips)
        wanted = {GATEWAY_METER: (config.rate, config.burst), PROBE_METER: (probes, probes)}
        own = {vip.name: vip.new_flow_rate for vip in vips if vip.new_flow_rate}
        for name in list(self.vip_meters):
            if name not in own:
                del self.vip_meters[name]
        used = set(self.vip_meters.values())
        last = min(ofmeter.OFPM_MAX, self.features.max_meter)
        free = (i for i in range(FIRST_VIP_METER, last + 1) if i not in used)
        for name, rate in sorted(own.items()):
            meter_id = self.vip_meters.get(name) or next(free, None)
            if meter_id is None:
                continue  # the switch has no meter left: this VIP shares the gateway's
            self.vip_meters[name] = meter_id
            wanted[meter_id] = (rate, max(1, rate // 3))
        return wanted

    def meter_of(self, vip: Vip) -> int:
        """The meter a VIP's punt goes through (0: none, the switch has no guard)."""
        if self.mode != SWITCH:
            return 0
        return self.vip_meters.get(vip.name, GATEWAY_METER)

    @property
    def probe_meter(self) -> int:
        return PROBE_METER if self.mode == SWITCH else 0

    @property
    def miss_meter(self) -> int:
        return GATEWAY_METER if self.mode == SWITCH else 0

    def admit(self, now: float) -> bool:
        """The controller's guard of one client packet-in: always yes while the switch's
        meters guard it (or the guard is off); else the token bucket decides."""
        if self.mode != CONTROLLER or self.bucket.admit(now):
            return True
        self.counters.controller_dropped += 1
        return False

    def tick(self, now: float) -> list[bytes]:
        """Ask for the meters' statistics every ``STATS_INTERVAL``."""
        if self.mode != SWITCH or now < self._next_stats:
            return []
        self._next_stats = now + STATS_INTERVAL
        return [ofmeter.meter_stats_request()]

    def on_stats(self, dropped: dict[int, int]) -> None:
        """One part of a meter statistics reply: the packets each meter dropped, as the
        switch counts them since that meter was added.  Ours only go up: each reading adds
        what it grew by (a smaller one means the meter was added again: all of it is new)."""
        counts = self.counters.switch_dropped
        for meter_id, packets in dropped.items():
            if meter_id in self.installed:
                seen = self._seen.get(meter_id, 0)
                grown = packets - seen if packets >= seen else packets
                counts[meter_id] = counts.get(meter_id, 0) + grown
                self._seen[meter_id] = packets
