"""``overload.LoadMonitor``: each signal and its threshold, the episode's hysteresis and bound,
and how the prober judges a probe with it (inconclusive, or counted)."""

from __future__ import annotations

import ipaddress
import random

from ryu_app.core import overload
from ryu_app.core.health import DOWN, HealthPolicy
from ryu_app.core.model import Backend, HealthCheck, Vip
from ryu_app.core.overload import HOLD, LoadMonitor, forgive_bound
from ryu_app.core.packets import TCP_ACK, TCP_RST, TCP_SYN, parse_segment, tcp_frame
from ryu_app.core.prober import Prober

POLICY = HealthPolicy(interval=1.0, timeout=0.5, rise=2, fall=2)


def flooded(monitor: LoadMonitor, at: float, rate: float = 6000.0) -> None:
    """One second of packet-ins at ``rate``, ending at ``at``."""
    monitor.packet_ins(0, at - 1.0)
    monitor.packet_ins(int(rate), at)


# ---- signals --------------------------------------------------------------------------------


def test_the_packet_in_rate_is_evidence_at_its_threshold_over_a_second():
    monitor = LoadMonitor()
    monitor.packet_ins(0, 0.0)
    monitor.packet_ins(4999, 0.5)
    monitor.packet_ins(0, 1.0)
    assert not monitor.overloaded(1.0) and monitor.view().packet_in_rate == 4999
    monitor.packet_ins(5000, 2.0)
    assert monitor.overloaded(2.0) and monitor.view().reasons == ("packet_in_rate",)
    custom = LoadMonitor(packet_in_rate=100.0)  # e.g. the flood guard's configured rate
    flooded(custom, 5.0, rate=150)
    assert custom.overloaded(5.0)


def test_an_episode_lasts_until_hold_after_the_last_evidence_and_is_announced():
    monitor = LoadMonitor()
    assert monitor.tick(0.0) == ([], [])
    flooded(monitor, 2.0)
    notices, warnings = monitor.tick(2.0)
    assert notices == [] and warnings == [
        "gateway overloaded (packet_in_rate): probes left unanswered are inconclusive for up "
        "to max(10 s, 3 x interval x fall)"
    ]
    flooded(monitor, 3.0)
    assert monitor.tick(3.0 + HOLD) == ([], []) and monitor.overloaded(3.0 + HOLD)
    notices, warnings = monitor.tick(3.0 + HOLD + 0.02)
    assert notices == ["gateway no longer overloaded (packet_in_rate; 1.0 s of evidence)"]
    assert warnings == []
    view = monitor.view()
    assert not view.overloaded and view.since == 2.0 and view.episodes == 1
    flooded(monitor, 10.0)
    assert monitor.view().episodes == 2


def test_the_median_answered_probe_near_its_timeout_is_evidence_but_one_slow_vm_is_not():
    monitor = LoadMonitor()
    for n in range(20):  # vm1 takes 90% of its timeout, vm2 and vm3 5%
        for key, share in ((("web", "vm1"), 0.9), (("web", "vm2"), 0.05), (("web", "vm3"), 0.05)):
            monitor.probe_ended(key, True, True, float(n), share)
    assert monitor.view().episodes == 0 and monitor.view().probe_rtt_share == 0.05
    slow = LoadMonitor()
    for n in range(overload.RTT_MIN_SAMPLES):
        slow.probe_ended(("web", f"vm{n % 3}"), True, True, float(n), 0.6)
    assert slow.overloaded(4.0) and slow.view().reasons == ("probe_rtt",)
    assert slow.view().probe_rtt_share == 0.6


def test_a_late_tick_is_evidence_from_a_tenth_of_a_second():
    monitor = LoadMonitor()
    monitor.loop_lag(0.05, 1.0)  # a garbage collection's pause: no
    assert not monitor.overloaded(1.0) and monitor.view().loop_lag == 0.05
    monitor.loop_lag(overload.LOOP_LAG_OVERLOADED, 2.0)
    assert monitor.overloaded(2.0) and monitor.view().reasons == ("loop_lag",)


def test_guard_drops_count_from_the_first_poll_and_start_over_when_the_meter_does():
    monitor = LoadMonitor()
    monitor.guard_drops(5_000, 1.0)  # drops before this controller looked: a baseline
    monitor.guard_drops(5_000, 2.0)
    assert not monitor.overloaded(2.0) and monitor.view().guard_drops == 0
    monitor.guard_drops(7_500, 3.0)
    assert monitor.overloaded(3.0) and monitor.view().guard_drops == 2_500
    monitor.guard_drops(100, 10.0)  # the meter was installed again (switch reconnected)
    assert not monitor.overloaded(10.0)
    monitor.guard_drops(300, 11.0)
    assert monitor.overloaded(11.0) and monitor.view().guard_drops == 2_700


def test_common_cause_is_most_up_backends_silent_at_once():
    monitor = LoadMonitor()
    keys = [(vip, f"vm{n}") for n in range(1, 3) for vip in ("web", "api")]  # over two VIPs
    for key in keys:
        monitor.probe_ended(key, True, True, 0.0, 0.01)
    monitor.probe_ended(keys[0], False, True, 1.0)
    monitor.probe_ended(keys[1], False, True, 1.1)  # two of four: not most
    assert not monitor.overloaded(1.1)
    monitor.probe_ended(keys[2], False, True, 1.2)  # three of four
    assert monitor.overloaded(1.2) and monitor.view().reasons == ("common_cause",)
    view = monitor.view()
    assert (view.silent_backends, view.answering_backends) == (3, 1)


def test_common_cause_counts_up_backends_only_and_needs_two():
    monitor = LoadMonitor()
    monitor.probe_ended(("web", "vm1"), False, True, 1.0)  # the only backend: its own death
    assert not monitor.overloaded(1.0)
    monitor.probe_ended(("web", "vm2"), False, False, 1.0)  # down: not counted
    monitor.probe_ended(("web", "vm3"), True, True, 1.0, 0.01)
    monitor.probe_ended(("api", "vm4"), False, True, 1.5)  # two silent, one answering
    assert monitor.overloaded(1.5)
    monitor.forget(("api", "vm4"))  # it went down
    assert monitor.view().silent_backends == 1


def test_silence_within_one_vip_is_common_cause_only_with_another_signal():
    """Two backends of one VIP that die together are silent at once: no evidence of the
    gateway's trouble unless another signal says so within ``HOLD``."""
    monitor = LoadMonitor()
    monitor.probe_ended(("web", "vm1"), False, True, 1.0)
    monitor.probe_ended(("web", "vm2"), False, True, 1.0)
    assert not monitor.overloaded(1.0) and monitor.view().silent_backends == 2
    monitor.loop_lag(0.25, 2.0)
    monitor.probe_ended(("web", "vm1"), False, True, 2.5)
    assert monitor.overloaded(2.5) and monitor.view().reasons == ("common_cause", "loop_lag")
    # Common cause does not keep itself going once the other signal is older than HOLD.
    monitor.probe_ended(("web", "vm2"), False, True, 2.0 + HOLD + 0.5)
    assert not monitor.overloaded(2.5 + HOLD + 0.1)


# ---- judging silence ------------------------------------------------------------------------


def test_forgive_bound_is_ten_seconds_or_three_detection_times():
    assert forgive_bound(POLICY) == 10.0
    assert forgive_bound(HealthPolicy(interval=2.0, timeout=1.0, rise=3, fall=3)) == 18.0


def test_silence_is_inconclusive_while_overloaded_and_counted_otherwise():
    monitor = LoadMonitor()
    assert monitor.silence(POLICY, 0.0, 0.5, "no answer") == (False, "no answer")
    flooded(monitor, 2.0)
    assert monitor.silence(POLICY, 2.5, 3.0, "no answer") == (
        True,
        "no answer; inconclusive: the gateway is overloaded (packet_in_rate)",
    )
    # A probe sent after the episode's last evidence had been quiet for HOLD: counted.
    assert monitor.silence(POLICY, 2.0 + HOLD + 0.01, 4.5, "no answer")[0] is False
    # One sent while it was still held, judged after: it was out during the overload.
    assert monitor.silence(POLICY, 2.0 + HOLD - 0.1, 4.5, "no answer")[0] is True
    assert monitor.view().inconclusive == 2


def test_silence_is_counted_again_once_the_episode_outlasts_the_bound():
    monitor = LoadMonitor()
    for second in range(2, 15):
        flooded(monitor, float(second))
    assert monitor.silence(POLICY, 11.5, 12.0, "no answer")[0] is True  # 10 s since 2.0
    assert monitor.silence(POLICY, 11.5, 12.5, "no answer") == (
        False,
        "no answer; the gateway has been overloaded (packet_in_rate) for 10.5 s, longer than "
        "the 10 s it may excuse this VIP's probes",
    )


# ---- the prober with it ---------------------------------------------------------------------

GW = ipaddress.ip_address("10.0.1.1").packed
MAC = bytes.fromhex("020000000001")
BACKENDS = tuple(
    Backend(f"vm{i}", f"192.168.100.{10 + i}", f"02:00:00:00:01:{i:02x}") for i in range(1, 4)
)
CHECK = HealthCheck(interval=1.0, timeout=0.5, rise=2, fall=2)


def flooded_prober() -> tuple[Prober, LoadMonitor]:
    monitor = LoadMonitor()
    prober = Prober([GW], MAC, random.Random(4), monitor)
    prober.set_vip(
        Vip("web", "10.0.0.100", 80, health=CHECK, backends=BACKENDS), {"vm1", "vm2", "vm3"}, 0.0
    )
    for second in range(1, 30):
        flooded(monitor, float(second) - 0.05)
    return prober, monitor


def reply(send_frame: bytes, flags: int, seq: int = 9000):
    syn = parse_segment(send_frame)
    answer = tcp_frame(
        MAC, MAC, syn.dst, syn.src, syn.dst_port, syn.src_port, seq, syn.seq + 1, flags
    )
    return parse_segment(answer)


def test_a_refusal_under_overload_is_still_a_failure():
    prober, monitor = flooded_prober()
    for now in (1.0, 2.0):  # every probe is due by 1.0 (phases < interval), then each second
        (send,) = [s for s in prober.due(now) if s.backend == "vm1"]
        prober.on_segment(reply(send.frame, TCP_RST | TCP_ACK, seq=0), now + 0.1)
    assert monitor.overloaded(2.1)
    assert prober.states[("web", "vm1")].state == DOWN
    assert prober.results[False] == 2 and monitor.view().inconclusive == 0


def test_an_answer_after_the_timeout_under_overload_is_inconclusive():
    prober, monitor = flooded_prober()
    sends = {s.backend: s for s in prober.due(1.0)}
    prober.on_segment(reply(sends["vm1"].frame, TCP_SYN | TCP_ACK), 1.6)  # timeout 0.5
    state = prober.states[("web", "vm1")]
    assert state.last_inconclusive and state.last_detail.startswith(
        "answered after the 0.5s timeout; inconclusive"
    )
    assert prober.results == {True: 0, False: 0} and monitor.view().inconclusive == 1


def test_inconclusive_probes_keep_the_failure_streak():
    """fail, inconclusive, fail: with fall 2 that is down (the inconclusive one counts
    neither way; it does not wipe the evidence before it)."""
    monitor = LoadMonitor()
    prober = Prober([GW], MAC, random.Random(4), monitor)
    prober.set_vip(Vip("web", "10.0.0.100", 80, health=CHECK, backends=BACKENDS[:1]), {"vm1"}, 0.0)
    prober.due(1.0)
    assert prober.expire(1.5) == [] and prober.results[False] == 1
    flooded(monitor, 2.0)
    prober.due(2.0)
    assert prober.expire(2.5) == [] and prober.states[("web", "vm1")].last_inconclusive
    prober.due(5.0)  # the flood is over (HOLD after 2.0)
    (verdict,) = prober.expire(5.5)
    assert verdict.transition.state == DOWN and prober.results[False] == 2
    assert prober.states[("web", "vm1")].state == DOWN


def test_the_switch_syn_rate_is_evidence_of_a_flood_the_controller_never_sees():
    """Switch mode: the slot rules' SYN counters, read about once a second, are the only sign
    of a flood.  A flood-sized delta (bench_flood's unbounded flood: ~100k SYN/s read) makes
    the gateway overloaded and a silent probe inconclusive; a legitimate load at the switch's
    capacity (~10k connections/s, a SYN each) does not, nor 4x's ~21k SYN/s, which it reads
    with every probe answered."""
    monitor = LoadMonitor()
    monitor.switch_syns(10_000, 1.0, 0.5)
    monitor.switch_syns(20_700, 1.0, 1.0)
    monitor.switch_syns(0, 0.0, 1.5)  # no time between the reads: ignored
    assert not monitor.overloaded(1.5) and monitor.view().switch_syn_rate == 20_700
    assert monitor.silence(POLICY, 1.0, 1.5, "no answer") == (False, "no answer")
    monitor.switch_syns(104_000, 1.04, 3.0)
    assert monitor.overloaded(3.0) and monitor.view().switch_syn_rate == 100_000
    assert monitor.view().reasons == ("switch_syn_rate",)
    assert monitor.silence(POLICY, 2.8, 3.3, "no answer") == (
        True,
        "no answer; inconclusive: the gateway is overloaded (switch_syn_rate)",
    )
    assert monitor.tick(3.0)[1][0].startswith("gateway overloaded (switch_syn_rate)")
    monitor.switch_syns(overload.SWITCH_SYN_RATE_OVERLOADED - 1, 1.0, 4.0)
    assert not monitor.overloaded(3.0 + HOLD + 0.01)  # the flood ended


def test_a_switch_syn_delta_over_a_short_time_is_not_read_as_a_higher_rate():
    """A hurried read 0.25 s after the last may hold a whole batch of the switch's counter
    updates (~0.5 s of SYNs): divided by half a second, legitimate load stays legitimate."""
    monitor = LoadMonitor()
    monitor.switch_syns(5_400, 0.25, 1.0)  # 0.5 s of ~10.8k SYN/s, in a 0.25 s window
    assert not monitor.overloaded(1.0) and monitor.view().switch_syn_rate == 10_800
    monitor.switch_syns(25_000, 0.25, 2.0)  # a quarter second of a 100k/s flood
    assert monitor.overloaded(2.0) and monitor.view().switch_syn_rate == 50_000


def test_the_switch_syn_rate_corroborates_common_cause():
    monitor = LoadMonitor()
    monitor.switch_syns(50_000, 1.0, 1.0)
    monitor.probe_ended(("web", "vm1"), False, True, 1.2)
    monitor.probe_ended(("web", "vm2"), False, True, 1.3)
    assert monitor.view().reasons == ("common_cause", "switch_syn_rate")
