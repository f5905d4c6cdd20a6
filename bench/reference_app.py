"""The new-flow benchmark's reference: a bare os-ken app, written the way a simple app is.

On each packet-in it parses the frame with ``os_ken.lib.packet``, picks a backend by a hash of
the 5-tuple and answers with one flow-mod (match: in_port, IPv4 addresses, TCP ports; actions:
inner destination MAC, tunnel destination, tunnel key, tunnel port) and one packet-out, both
built from the framework's message classes.  It keeps no state and does nothing else, so it
measures what os-ken itself costs per new flow.

Run (``bench/bench_newflow.py`` does):
    python bench/reference_app.py --port 6653 --uplink 1 --tunnel 2 --vni 100 \
        --backend 192.168.100.11=02:00:00:00:01:01 [--backend ...]
"""

from __future__ import annotations

import argparse
import logging
import sys

from os_ken import cfg
from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.lib.packet import ipv4, packet, tcp
from os_ken.ofproto import ofproto_v1_3

ETH_IPV4 = 0x0800
PRIORITY_FLOW = 200
IDLE_TIMEOUT = 60

# Filled in by main() before the framework instantiates the app (it passes no arguments).
SETTINGS: dict = {}


class ReferenceApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.uplink = SETTINGS["uplink"]
        self.tunnel = SETTINGS["tunnel"]
        self.vni = SETTINGS["vni"]
        self.backends = SETTINGS["backends"]  # [(tunnel ip, mac)]

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev):
        datapath = ev.msg.datapath
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        actions = [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)]
        instructions = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        datapath.send_msg(
            parser.OFPFlowMod(
                datapath=datapath, priority=0, match=parser.OFPMatch(), instructions=instructions
            )
        )

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        datapath = msg.datapath
        ofp, parser = datapath.ofproto, datapath.ofproto_parser
        in_port = msg.match["in_port"]
        pkt = packet.Packet(msg.data)
        ip = pkt.get_protocol(ipv4.ipv4)
        segment = pkt.get_protocol(tcp.tcp)
        if in_port != self.uplink or ip is None or segment is None:
            return
        five_tuple = (ip.src, ip.dst, segment.src_port, segment.dst_port)
        tunnel_ip, mac = self.backends[hash(five_tuple) % len(self.backends)]
        actions = [
            parser.OFPActionSetField(eth_dst=mac),
            parser.OFPActionSetField(tun_ipv4_dst=tunnel_ip),
            parser.OFPActionSetField(tunnel_id=self.vni),
            parser.OFPActionOutput(self.tunnel),
        ]
        match = parser.OFPMatch(
            in_port=in_port,
            eth_type=ETH_IPV4,
            ipv4_src=ip.src,
            ipv4_dst=ip.dst,
            ip_proto=ip.proto,
            tcp_src=segment.src_port,
            tcp_dst=segment.dst_port,
        )
        instructions = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        datapath.send_msg(
            parser.OFPFlowMod(
                datapath=datapath,
                priority=PRIORITY_FLOW,
                idle_timeout=IDLE_TIMEOUT,
                match=match,
                instructions=instructions,
            )
        )
        unbuffered = msg.buffer_id == ofp.OFP_NO_BUFFER
        datapath.send_msg(
            parser.OFPPacketOut(
                datapath=datapath,
                buffer_id=msg.buffer_id,
                in_port=in_port,
                actions=actions,
                data=msg.data if unbuffered else None,
            )
        )


def backend(text: str) -> tuple[str, str]:
    address, separator, mac = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected TUNNEL_IP=MAC, got {text!r}")
    return address, mac


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="OpenFlow listen address")
    parser.add_argument("--port", type=int, default=6653, help="OpenFlow listen port")
    parser.add_argument("--uplink", type=int, default=1, help="uplink port number")
    parser.add_argument("--tunnel", type=int, default=2, help="tunnel port number")
    parser.add_argument("--vni", type=int, default=100, help="tunnel key")
    parser.add_argument("--backend", type=backend, action="append", required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    SETTINGS.update(uplink=args.uplink, tunnel=args.tunnel, vni=args.vni, backends=args.backend)
    # app_manager (imported above) has registered the framework's options: parse, then override.
    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", args.host)
    cfg.CONF.set_override("ofp_tcp_listen_port", args.port)
    manager = app_manager.AppManager.get_instance()
    manager.load_apps([__name__])  # this module; as a script, __main__
    services = manager.instantiate_apps(**manager.create_contexts())
    try:
        hub.joinall(services)
    except KeyboardInterrupt:
        pass
    finally:
        manager.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
