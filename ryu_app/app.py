"""The os-ken (or Ryu) application: a shim between the framework's events and ``GatewayCore``.

Every handler looks up the core, calls it with ``now`` and sends what it returns.  No exception
may leave a handler: with os-ken 4.x's native hub one escaping exception silently ends the app's
event thread for good (see shared ENVIRONMENT notes), so ``_guarded`` catches, counts and logs.
"""

from __future__ import annotations

import functools
import logging
import time

from ryu_app import compat, settings
from ryu_app.core.gateway import GatewayCore

ofp_event = compat.load("controller.ofp_event")
handler = compat.load("controller.handler")

LOG = logging.getLogger("lockstep.gateway")


def _guarded(method):
    @functools.wraps(method)
    def wrapper(self, ev):
        try:
            method(self, ev)
        except Exception:  # noqa: BLE001 - see module docstring: nothing may escape
            self.handler_errors += 1
            LOG.exception("handler %s failed (counted, event dropped)", method.__name__)

    return wrapper


class LockstepApp(compat.app_base_class()):
    OFP_VERSIONS = [compat.ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.deployment, self.gateway = settings.current()
        self.core = GatewayCore(self.gateway, list(self.deployment.vips))
        self.core.balancer.rebuild_now(self.core.take_pending())
        self.datapath = None
        self.handler_errors = 0
        self.clock = time.monotonic
        LOG.info(
            "gateway %s: dpid %#x, %d VIP(s)",
            self.gateway.name,
            self.gateway.dpid,
            len(self.deployment.vips),
        )

    def _send(self, datapath, messages) -> None:
        for message in messages:
            message.datapath = datapath
            datapath.send_msg(message)

    @handler.set_ev_cls(ofp_event.EventOFPSwitchFeatures, handler.CONFIG_DISPATCHER)
    @_guarded
    def switch_features(self, ev):
        datapath = ev.msg.datapath
        if datapath.id != self.gateway.dpid:
            LOG.warning(
                "ignoring switch dpid %#x (this controller serves %#x)",
                datapath.id,
                self.gateway.dpid,
            )
            return
        self.datapath = datapath
        LOG.info("switch %#x connected", datapath.id)
        self._send(datapath, self.core.on_connect(self.clock()))

    @handler.set_ev_cls(ofp_event.EventOFPPortDescStatsReply, handler.MAIN_DISPATCHER)
    @_guarded
    def port_desc(self, ev):
        if ev.msg.datapath is not self.datapath:
            return
        ports = {port.name.decode(errors="replace"): port.port_no for port in ev.msg.body}
        messages = self.core.on_ports(ports, self.clock())
        if self.core.missing_ports:
            LOG.error("switch lacks port(s) %s; has %s", self.core.missing_ports, sorted(ports))
        else:
            LOG.info(
                "pipeline installed (uplink %d, tunnel %d)",
                self.core.ports.uplink,
                self.core.ports.tunnel,
            )
        self._send(ev.msg.datapath, messages)

    @handler.set_ev_cls(ofp_event.EventOFPPacketIn, handler.MAIN_DISPATCHER)
    @_guarded
    def packet_in(self, ev):
        msg = ev.msg
        if msg.datapath is not self.datapath:
            return
        messages = self.core.on_packet_in(
            msg.match["in_port"], msg.buffer_id, msg.data, self.clock()
        )
        self._send(msg.datapath, messages)

    @handler.set_ev_cls(ofp_event.EventOFPFlowRemoved, handler.MAIN_DISPATCHER)
    @_guarded
    def flow_removed(self, ev):
        msg = ev.msg
        if msg.datapath is self.datapath:
            self._send(msg.datapath, self.core.on_flow_removed(msg.cookie, msg.match, self.clock()))

    @handler.set_ev_cls(ofp_event.EventOFPStateChange, handler.DEAD_DISPATCHER)
    @_guarded
    def switch_gone(self, ev):
        if ev.datapath is self.datapath:
            LOG.warning("switch %#x disconnected", ev.datapath.id)
            self.datapath = None
