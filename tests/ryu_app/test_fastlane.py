"""The fast lane's datapath: it splits what the socket gives into OpenFlow messages, hands
packet-ins of a switch in the main phase to the sink in bursts, keeps every other message on
the framework's path in order, and writes from the sending thread.

Real loopback TCP sockets; the framework's dispatch (``_to_framework``) is recorded instead of
run, since it needs a running app manager (the integration tests run the whole thing)."""

from __future__ import annotations

import random
import socket
import struct
import threading

import pytest

from ryu_app.shell import fastlane
from ryu_app.shell.compat import ofproto_v1_3 as ofp

MAIN, CONFIG, DEAD = (
    fastlane.handler.MAIN_DISPATCHER,
    fastlane.handler.CONFIG_DISPATCHER,
    fastlane.handler.DEAD_DISPATCHER,
)


def message(msg_type: int, body: bytes = b"", xid: int = 1, version: int = 4) -> bytes:
    return struct.pack("!BBHI", version, msg_type, 8 + len(body), xid) + body


def packet_in(n: int) -> bytes:
    return message(ofp.OFPT_PACKET_IN, n.to_bytes(4, "big") * 6, xid=n)


class Recorder(fastlane.FastLaneDatapath):
    """Records what goes to the sink and what would go to the framework, in one timeline."""

    def __init__(self, sock, address, state=MAIN):
        super().__init__(sock, address)
        self.timeline: list[tuple[str, object]] = []
        self.state = state

    @staticmethod
    def sink(datapath, messages):  # as ``install`` sets it: called with the datapath
        datapath.timeline.append(("sink", list(messages)))

    def _to_framework(self, version, msg_type, length, xid, data):
        assert len(data) == length
        self.timeline.append(("framework", data))


@pytest.fixture
def pair():
    """(our end, the switch's end) of a loopback TCP connection."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        switch = socket.create_connection(server.getsockname())
        ours, _ = server.accept()
    yield ours, switch
    ours.close()
    switch.close()


def run_receive_loop(datapath):
    thread = threading.Thread(target=datapath._recv_loop, daemon=True)
    thread.start()
    return thread


def messages_seen(timeline) -> list[bytes]:
    seen = []
    for kind, what in timeline:
        seen += what if kind == "sink" else [what]
    return seen


def test_packet_ins_reach_the_sink_whole_and_in_order_however_the_bytes_are_cut(pair):
    ours, switch = pair
    datapath = Recorder(ours, ("127.0.0.1", 1))
    sent = [packet_in(n) for n in range(300)]
    stream = b"".join(sent)
    thread = run_receive_loop(datapath)
    cuts = sorted(random.Random(7).sample(range(1, len(stream)), 120))
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        switch.sendall(stream[start:end])  # messages split anywhere, headers included
    switch.shutdown(socket.SHUT_WR)
    thread.join(5)
    assert not thread.is_alive(), "the loop ends when the switch closes"
    assert all(kind == "sink" for kind, _ in datapath.timeline)
    assert messages_seen(datapath.timeline) == sent


def test_a_burst_goes_to_the_sink_in_one_call():
    datapath = Recorder.__new__(Recorder)  # no socket needed to dispatch a buffer
    datapath.timeline, datapath.state = [], MAIN
    buffer = bytearray(b"".join(packet_in(n) for n in range(50)) + packet_in(50)[:20])
    used = datapath._dispatch(buffer)
    assert used == 50 * len(packet_in(0)), "the cut-off message waits for the rest"
    assert [kind for kind, _ in datapath.timeline] == ["sink"]
    assert len(datapath.timeline[0][1]) == 50


def test_flow_removeds_take_the_fast_lane_too():
    datapath = Recorder.__new__(Recorder)
    datapath.timeline, datapath.state = [], MAIN
    removed = message(ofp.OFPT_FLOW_REMOVED, b"r" * 40, xid=99)
    datapath._dispatch(bytearray(packet_in(1) + removed + packet_in(2)))
    assert datapath.timeline == [("sink", [packet_in(1), removed, packet_in(2)])]


def test_flow_statistics_replies_take_the_fast_lane_other_multipart_replies_do_not():
    """Switch mode reads its pins back as flow statistics (``core.pinread``): raw to the core,
    never through the framework's parser (an object per rule); port descriptions and meter
    replies keep the framework's path, where their handlers are."""
    datapath = Recorder.__new__(Recorder)
    datapath.timeline, datapath.state = [], MAIN
    flows = message(ofp.OFPT_MULTIPART_REPLY, struct.pack("!HH4x", ofp.OFPMP_FLOW, 1) + b"f" * 8)
    ports = message(ofp.OFPT_MULTIPART_REPLY, struct.pack("!HH4x", ofp.OFPMP_PORT_DESC, 0))
    meters = message(ofp.OFPT_MULTIPART_REPLY, struct.pack("!HH4x", ofp.OFPMP_METER, 0))
    datapath._dispatch(bytearray(flows + ports + packet_in(1) + flows + meters))
    assert datapath.timeline == [
        ("sink", [flows]),
        ("framework", ports),
        ("sink", [packet_in(1), flows]),
        ("framework", meters),
    ]


def test_other_messages_keep_their_place_between_packet_ins():
    datapath = Recorder.__new__(Recorder)
    datapath.timeline, datapath.state = [], MAIN
    reply = message(ofp.OFPT_MULTIPART_REPLY, b"p" * 40, xid=99)
    echo = message(ofp.OFPT_ECHO_REQUEST, xid=98)
    stream = [packet_in(1), packet_in(2), reply, packet_in(3), echo, echo]
    datapath._dispatch(bytearray(b"".join(stream)))
    assert datapath.timeline == [
        ("sink", [packet_in(1), packet_in(2)]),
        ("framework", reply),
        ("sink", [packet_in(3)]),
        ("framework", echo),
        ("framework", echo),
    ]


@pytest.mark.parametrize("state", [CONFIG, fastlane.handler.HANDSHAKE_DISPATCHER, DEAD])
def test_before_the_main_phase_packet_ins_take_the_frameworks_path(state):
    datapath = Recorder.__new__(Recorder)
    datapath.timeline, datapath.state = [], state
    datapath._dispatch(bytearray(packet_in(1)))
    assert datapath.timeline == [("framework", packet_in(1))]


def test_another_openflow_version_takes_the_frameworks_path():
    datapath = Recorder.__new__(Recorder)
    datapath.timeline, datapath.state = [], MAIN
    other = message(ofp.OFPT_PACKET_IN, b"x" * 16, version=1)
    datapath._dispatch(bytearray(other))
    assert datapath.timeline == [("framework", other)]


def test_without_a_sink_everything_takes_the_frameworks_path():
    class NoSink(Recorder):
        sink = None

    datapath = NoSink.__new__(NoSink)
    datapath.timeline, datapath.state = [], MAIN
    datapath._dispatch(bytearray(packet_in(1) + packet_in(2)))
    assert datapath.timeline == [("framework", packet_in(1)), ("framework", packet_in(2))]


def test_a_length_below_the_header_skips_just_the_header_as_the_framework_does():
    datapath = Recorder.__new__(Recorder)
    datapath.timeline, datapath.state = [], MAIN
    bogus = struct.pack("!BBHI", 4, ofp.OFPT_ECHO_REQUEST, 3, 5)
    used = datapath._dispatch(bytearray(bogus + packet_in(1)))
    assert used == len(bogus) + len(packet_in(1))
    assert datapath.timeline == [("framework", bogus), ("sink", [packet_in(1)])]


def test_send_writes_from_the_calling_thread(pair):
    ours, switch = pair
    datapath = fastlane.FastLaneDatapath(ours, ("127.0.0.1", 1))
    assert datapath.send(b"first") and datapath.send(b"second")
    switch.settimeout(5)
    received = b""
    while len(received) < 11:
        received += switch.recv(64)
    assert received == b"firstsecond"
    assert datapath.send_q.empty(), "nothing waits for the framework's sending thread"


def test_send_after_the_switch_went_away_reports_false_and_stops_writing(pair):
    ours, switch = pair
    datapath = fastlane.FastLaneDatapath(ours, ("127.0.0.1", 1))
    switch.close()
    results = [datapath.send(b"x" * 65536) for _ in range(50)]  # the reset arrives meanwhile
    assert results[-1] is False
    assert datapath.send_q is None, "the echo loop sees the connection closed"
    assert datapath.send(b"more") is False


def test_install_makes_the_framework_serve_switches_with_the_fast_lane():
    controller = fastlane.controller
    saved = controller.datapath_connection_factory, fastlane.FastLaneDatapath.sink
    try:
        seen = []
        fastlane.install(lambda datapath, messages: seen.append(messages))
        assert controller.datapath_connection_factory is fastlane.connection
        fastlane.FastLaneDatapath.sink(None, ["m"])
        assert seen == [["m"]]
    finally:
        controller.datapath_connection_factory = saved[0]
        fastlane.FastLaneDatapath.sink = saved[1]
