"""The gateway's own evidence that it is overloaded, so that its probes' silence is not blamed
on the backends.

Probe answers come back through the same uplink, switch and packet-in path as client traffic:
under a flood they are lost there, and a gateway that counted each lost answer as a failure
marked every healthy VM DOWN together (issue 13).  ``LoadMonitor`` gathers what the core sees
or is given, each a *signal* that, when over its threshold, is *evidence* of overload:

- ``packet_in_rate``: packet-ins per second (``GatewayCore.on_messages`` counts them);
- ``probe_rtt``: how long answered probes took, as a share of their timeout (the median of the
  last few: one slow VM does not move it);
- ``loop_lag``: how late the shell's health tick ran (it should run every 20 ms);
- ``guard_drops``: client packet-ins the switch's flood guard (a meter) dropped, its cumulative
  count polled by the shell: a rising count is a flood in progress;
- ``switch_syn_rate``: SYNs per second the switch placed by itself for switch-mode VIPs (their
  slot rules' SYN counters, read about once a second by ``pinread``): in switch mode a flood
  reaches neither the controller nor the meter, yet the switch's intake drops the probes'
  answers with it (``SWITCH_SYN_RATE_OVERLOADED`` says why at that rate);
- ``common_cause``: most of the gateway's UP backends (over all its VIPs) had their latest
  probe go unanswered: one VM dying is one backend, the gateway's own trouble is all of them.
  It is evidence only when *corroborated*: another signal gave evidence within ``HOLD``, or the
  silent backends belong to more than one VIP.  Its evidence comes from the very probes it
  then excuses, so alone, within one VIP, it would excuse backends that really die together
  (a 2-backend VIP, or a VIP's VMs on one host) for ``forgive_bound``; a real flood brings a
  packet-in rate, guard drops or the switch's SYN rate with it, and the gateway's own trouble
  silences every VIP.

The gateway is *overloaded* from the first evidence until ``HOLD`` seconds after the last one
(an *episode*).  While it is, a probe that got no answer in time is *inconclusive* (``silence``:
it counts neither way), for at most ``forgive_bound`` seconds of an episode, so that a VM that
really dies during a long flood is still taken down.  Answers that do come (an RST, a wrong
HTTP status, a SYN-ACK) are always conclusive.  Pure: every call takes ``now``.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import NamedTuple

from ryu_app.core.health import HealthPolicy

# Packet-ins per second that are evidence: what one gateway's switch delivers at most on this
# machine's userspace datapath (~5k new flows/s, docs/NOTES.md); at that rate the switch's
# packet-in queue (100 packets by default) is full and probe answers wait or drop in it.
# Where a flood guard meters client packet-ins, its rate may be set instead (``rate_limit``).
PACKET_IN_RATE_OVERLOADED = 5_000.0
RATE_WINDOW = 1.0  # seconds the packet-in rate is counted over
# SYNs per second placed by a switch's slot rules that are evidence (switch mode).  The switch
# places a SYN for no upcall and no packet-in, so its limit is not the controller's but its
# intake's: this datapath reads the uplink in ovs-vswitchd's main thread.  bench_flood, switch
# mode, this 2-core machine, reads of these counters: ~10k/s at 2x and at most 21.6k/s at 4x
# (0-2% lost on the uplink's socket, every probe answered), 31k-78k/s in the first read that
# saw an unbounded flood (more reads follow at each silent probe) and 50k-350k/s after (~100k/s
# read, 75% lost, probe answers among them).  In between; three times the most real
# connections the switch completes (bench_ovs: ~10k handshakes/s, a SYN each).
SWITCH_SYN_RATE_OVERLOADED = 30_000.0
# The switch adds to its rules' counters in batches (its revalidators, about every 0.5 s), so a
# delta over a shorter time (a round hurried by a silent probe) may hold a whole batch: it is
# divided by this at least, not to read a legitimate rate as twice what it is.
SWITCH_RATE_MIN_SECONDS = 0.5
# An answered probe that took half its timeout or more: the ones a little later were lost as
# "no answer".  The median of the last ``RTT_SAMPLES`` answers (at least ``RTT_MIN_SAMPLES``)
# is compared, so one slow VM among several does not count as the gateway's trouble.
PROBE_RTT_SHARE_OVERLOADED = 0.5
RTT_SAMPLES = 15
RTT_MIN_SAMPLES = 5
# A health tick five ticks (100 ms) late: the controller's loop is saturated, so probe answers
# already in its socket are read after their deadline.  (A garbage collection pause is ~30 ms.)
LOOP_LAG_OVERLOADED = 0.1
# At least this many UP backends silent at once, and more than half of those with a latest
# result: with one backend, its silence cannot be told from its death.
COMMON_CAUSE_MIN = 2
# Overloaded until this long after the last evidence: the packet-in rate and the flood guard's
# drops are sampled about once a second, so one quiet sample must not end an episode.
HOLD = 2.0
# How long an episode may excuse silent probes (``forgive_bound``): at least ``FORGIVE_MIN``
# seconds, or ``FORGIVE_ROUNDS`` times the VIP's own detection time (interval x fall), so a VIP
# probed slowly gets as many rounds of grace as a fast one.
FORGIVE_MIN = 10.0
FORGIVE_ROUNDS = 3


def forgive_bound(policy: HealthPolicy) -> float:
    """Seconds of one overload episode during which a VIP's silent probes are inconclusive.
    A VM that dies is then taken down within ``forgive_bound + interval x fall + timeout`` even
    under a flood that never ends (``interval x fall + timeout`` otherwise)."""
    return max(FORGIVE_MIN, FORGIVE_ROUNDS * policy.interval * policy.fall)


class OverloadView(NamedTuple):
    """What ``/v1/health`` and the metrics show (times on the core's clock)."""

    overloaded: bool
    since: float | None  # the current (or last) episode's start
    reasons: tuple[str, ...]  # signals that gave evidence in that episode
    episodes: int
    packet_in_rate: float  # over the last full window
    probe_rtt_share: float | None  # median answered probe's time / its timeout
    loop_lag: float  # of the last tick
    guard_drops: int  # client packet-ins the flood guard dropped since the first poll
    switch_syn_rate: float  # SYNs/s switch-mode slot rules placed, between the last two reads
    silent_backends: int  # UP backends whose latest probe went unanswered
    answering_backends: int  # UP backends whose latest probe was answered
    inconclusive: int  # probes judged inconclusive


class LoadMonitor:
    def __init__(
        self,
        packet_in_rate: float = PACKET_IN_RATE_OVERLOADED,
        switch_syn_rate: float = SWITCH_SYN_RATE_OVERLOADED,
    ):
        self.rate_limit = packet_in_rate
        self.switch_syn_limit = switch_syn_rate
        self.episodes = 0
        self.inconclusive = 0
        self.unanswered = 0  # probes of UP backends that went unanswered (evidence is wanted)
        self._since: float | None = None
        self._last_evidence: float | None = None
        self._last_by_signal: dict[str, float] = {}
        self._reasons: set[str] = set()
        self._overloaded = False  # as of the last ``tick``
        self._window_start: float | None = None
        self._window_count = 0
        self._rate = 0.0
        self._rtt: deque[float] = deque(maxlen=RTT_SAMPLES)
        self._lag = 0.0
        self._guard_total: int | None = None
        self._guard_dropped = 0
        self._switch_syn_rate = 0.0
        self._silent: set = set()
        self._answering: set = set()

    # ---- signals ---------------------------------------------------------------------------

    def packet_ins(self, count: int, now: float) -> None:
        """``count`` packet-ins arrived (0: none; called every tick so the rate falls too)."""
        if self._window_start is None:
            self._window_start = now
        self._window_count += count
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW:
            self._rate = self._window_count / elapsed
            self._window_start, self._window_count = now, 0
            if self._rate >= self.rate_limit:
                self._evidence("packet_in_rate", now)

    def loop_lag(self, lag: float, now: float) -> None:
        """The health tick due at ``now - lag`` ran at ``now``."""
        self._lag = lag
        if lag >= LOOP_LAG_OVERLOADED:
            self._evidence("loop_lag", now)

    def guard_drops(self, total: int, now: float) -> None:
        """The switch's flood guard has dropped ``total`` client packet-ins so far (its meter's
        cumulative count, polled about once a second).  A count lower than the last one (the
        meter was installed again) starts over from it."""
        previous, self._guard_total = self._guard_total, total
        if previous is not None and total > previous:
            self._guard_dropped += total - previous
            self._evidence("guard_drops", now)

    def switch_syns(self, syns: int, seconds: float, now: float) -> None:
        """The switch's slot rules placed ``syns`` SYNs in the last ``seconds`` (between two
        reads of their counters, ``pinread.syn_delta``: never negative)."""
        if seconds <= 0 or syns < 0:
            return
        self._switch_syn_rate = syns / max(seconds, SWITCH_RATE_MIN_SECONDS)
        if self._switch_syn_rate >= self.switch_syn_limit:
            self._evidence("switch_syn_rate", now)

    def probe_ended(
        self, key, answered: bool, up: bool, now: float, rtt_share: float | None = None
    ) -> None:
        """A probe of ``key`` ((VIP, backend); an UP backend or not, as it is now) was answered
        (its round trip as a share of its timeout: ``rtt_share``) or went unanswered."""
        if not up:
            self.forget(key)
            return
        if answered:
            self._silent.discard(key)
            self._answering.add(key)
            if rtt_share is not None:
                self._probe_rtt(rtt_share, now)
            return
        self.unanswered += 1
        self._answering.discard(key)
        self._silent.add(key)
        silent = len(self._silent)
        most = silent >= COMMON_CAUSE_MIN and 2 * silent > silent + len(self._answering)
        if most and self._corroborated(now):
            self._evidence("common_cause", now)

    def _corroborated(self, now: float) -> bool:
        """Most UP backends are silent: the gateway's trouble, not theirs, only if another
        signal says so too or the silence spans more than one VIP (see the module's docstring)."""
        others = (t for signal, t in self._last_by_signal.items() if signal != "common_cause")
        return any(now - t <= HOLD for t in others) or len({k[0] for k in self._silent}) > 1

    def forget(self, key) -> None:
        """``key`` is no longer an UP backend (down, removed, replaced)."""
        self._silent.discard(key)
        self._answering.discard(key)

    def _probe_rtt(self, share: float, now: float) -> None:
        self._rtt.append(share)
        if share < PROBE_RTT_SHARE_OVERLOADED or len(self._rtt) < RTT_MIN_SAMPLES:
            return  # a fast answer is no evidence, whatever the older ones said
        if statistics.median(self._rtt) >= PROBE_RTT_SHARE_OVERLOADED:
            self._evidence("probe_rtt", now)

    def _evidence(self, signal: str, now: float) -> None:
        if not self._within_hold(now):
            self._since = now
            self._reasons = set()
            self.episodes += 1
        self._last_evidence = self._last_by_signal[signal] = now
        self._reasons.add(signal)

    def _within_hold(self, now: float) -> bool:
        return self._last_evidence is not None and now - self._last_evidence <= HOLD

    # ---- what follows from them ------------------------------------------------------------

    def overloaded(self, now: float) -> bool:
        return self._within_hold(now)

    def silence(
        self, policy: HealthPolicy, started: float, now: float, detail: str
    ) -> tuple[bool, str]:
        """Judge a probe of a VIP with ``policy``, started at ``started``, that got no answer
        in time (``detail`` says how): (inconclusive?, the detail to record).  Inconclusive if
        the gateway was overloaded at some moment while the probe was out and the episode is
        not older than ``forgive_bound``."""
        last = self._last_evidence
        if last is None or last + HOLD < started:
            return False, detail
        reasons = ", ".join(sorted(self._reasons))
        age, bound = now - self._since, forgive_bound(policy)
        if age > bound:
            return False, (
                f"{detail}; the gateway has been overloaded ({reasons}) for {age:.1f} s, "
                f"longer than the {bound:g} s it may excuse this VIP's probes"
            )
        self.inconclusive += 1
        return True, f"{detail}; inconclusive: the gateway is overloaded ({reasons})"

    def tick(self, now: float) -> tuple[list[str], list[str]]:
        """Called every health tick: (notices, warnings) when an episode starts or ends."""
        overloaded = self._within_hold(now)
        if overloaded == self._overloaded:
            return [], []
        self._overloaded = overloaded
        reasons = ", ".join(sorted(self._reasons))
        if overloaded:
            warning = (
                f"gateway overloaded ({reasons}): probes left unanswered are inconclusive "
                f"for up to max({FORGIVE_MIN:g} s, {FORGIVE_ROUNDS} x interval x fall)"
            )
            return [], [warning]
        lasted = self._last_evidence - self._since
        return [f"gateway no longer overloaded ({reasons}; {lasted:.1f} s of evidence)"], []

    def view(self) -> OverloadView:
        """As of the last ``tick``."""
        return OverloadView(
            self._overloaded,
            self._since,
            tuple(sorted(self._reasons)),
            self.episodes,
            self._rate,
            statistics.median(self._rtt) if self._rtt else None,
            self._lag,
            self._guard_dropped,
            self._switch_syn_rate,
            len(self._silent),
            len(self._answering),
            self.inconclusive,
        )
