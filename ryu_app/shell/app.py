"""The os-ken (or Ryu) application: a shim between the framework's events and ``GatewayCore``.

Every handler calls the core with ``now`` and applies the ``Effects`` it returns (``apply``:
the messages in one write to the switch, the table requests to the builder, the lines to the
log).  No exception may leave a handler: with os-ken 4.x's native hub one escaping exception
silently ends the app's event thread for good (see shared ENVIRONMENT notes), so ``_guarded``
catches, counts and logs.

Two threads of control touch the core, one at a time (``core_lock``):

- the app's event loop: switch life cycle, port status, timers (the health tick), the parts of
  REST calls that touch the core (``call_on_loop``: the service takes snapshots and applies
  changes there, and renders, validates and saves on the REST thread) and table builds
  finished by a worker, the last three as ``EventCall`` events on that loop, Faucet's way;
- the switch's receiving thread, for packet-ins and flow-removeds (one each per flow): they
  skip the framework's parser and event queue (``fastlane``) and are handled where they are
  read, a burst at a time, answered with one write.

Under an eventlet hub both are green threads of one OS thread and never preempt each other
inside the core (it does no I/O), so the lock is a no-op there.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import sys
import threading
import time

from ryu_app.api import pacing, rest
from ryu_app.api.service import GatewayService
from ryu_app.core import maglev
from ryu_app.core.balancer import TableRequest
from ryu_app.core.effects import Effects
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.switchports import PORT_EVENTS
from ryu_app.shell import builder, compat, fastlane, settings, statesaver, supervision

ofp_event = compat.load("controller.ofp_event")
handler = compat.load("controller.handler")
event = compat.load("controller.event")
hub = compat.load("lib.hub")

LOG = logging.getLogger("lockstep.gateway")
HEALTH_TICK_SECONDS = 0.02  # probe start and timeout resolution (intervals are >= 50 ms)
REST_CALL_TIMEOUT = 10.0  # a REST call waits this long for the event loop
TABLE_WAIT_POLL = 0.005  # how often a REST change looks whether its tables are in
GREEN_HUB = compat.GREEN_HUB
# A thread that wants the interpreter waits for a busy one to let go for up to this long (5 ms
# by default).  The switch's receiving thread shares it with the REST threads, which render
# answers of thousands of rows: under a client asking in a loop (bench_newflow's REST load,
# 20k new flows/s) packet-in p99 was 12-14 ms with the default and 6-9 ms with this.
SWITCH_INTERVAL = 0.0005


if GREEN_HUB:
    from eventlet import tpool

    def _off_the_hub(function, *args):
        """Run ``function`` in an OS thread: a green worker would hold every green thread
        (the switch's input among them) for the whole of a table build."""
        return tpool.execute(function, *args)
else:

    def _off_the_hub(function, *args):
        return function(*args)  # the worker is an OS thread already


def settle_heap() -> None:
    """Collect, then move every object alive now out of the collector's sight (``gc.freeze``):
    what start-up made (the framework's modules, parsers, configuration: ~100k objects) lives
    as long as the process.  Left in, the first full collection after start-up, set off by
    whichever thread allocates (a REST thread rendering, at the first REST load), looked at all
    of them while holding the interpreter: a 25-30 ms stop of the packet path (bench_newflow's
    REST load: packet-in p99 ~10 ms in the round it fell in, ~1.5 ms in the others)."""
    gc.collect()
    gc.freeze()


class EventCall(event.EventBase):
    """Run ``function()`` on the app's event loop."""

    def __init__(self, function):
        super().__init__()
        self.function = function


def _guarded(method):
    @functools.wraps(method)
    def wrapper(self, ev):
        try:
            with self.core_lock:
                method(self, ev)
        except Exception:  # noqa: BLE001 - see module docstring: nothing may escape
            self.handler_errors += 1
            LOG.exception("handler %s failed (counted, event dropped)", method.__name__)

    return wrapper


class LockstepApp(compat.app_base_class()):
    OFP_VERSIONS = [compat.ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.core_lock = contextlib.nullcontext() if GREEN_HUB else threading.Lock()
        if not GREEN_HUB:
            sys.setswitchinterval(SWITCH_INTERVAL)
        current = settings.current()
        self.deployment, self.gateway = current.deployment, current.gateway
        self.clock = time.monotonic
        self.core = GatewayCore(self.gateway)
        if current.saved_ids is not None:
            self.core.restore_ids(current.saved_ids)
        # Under classic Ryu the process is monkey-patched by eventlet (compat.py), and a pipe
        # read from a thread of its thread pool would be a green read off its hub: build here.
        self.builder = builder.TableBuilder(in_process=compat.FRAMEWORK == "ryu")
        self.builder.start()  # the workers load the compiled fill while the core is set up
        started = self.core.set_vips(list(self.deployment.vips), self.clock())
        self._build_at_start(started.tables)  # before any switch: here, at once
        if current.saved_ids is not None and current.saved_ids.history:
            self._restore_history(current.saved_ids)
        _log(started)
        self.datapath = None
        self.handler_errors = 0
        self._tick_queued = False
        self._tick_due = 0.0  # when the queued health tick should have run (its lag: load)
        self._tables_wanted: list = []  # TableRequests not handed to a build worker yet
        self._building = False
        self.saver = statesaver.StateSaver(
            current.state_file,
            self.deployment.vips if current.vips_saved else None,
            current.saved_ids,
            lock=fastlane.new_lock(),
            offload=_off_the_hub,
        )
        self.service = GatewayService(
            self.core,
            self.deployment,
            self.gateway,
            apply=self.apply,
            save=self.saver.save_vips,
            on_loop=self.call_on_loop,
            tables_ready=self.tables_ready,
            lock=fastlane.new_lock(),
        )
        self.service.handler_errors = lambda: self.handler_errors
        # The service hands what touches the core to the loop itself (``call_on_loop``).
        api = rest.RestApi(self.service, token=current.token)
        host, port = self.gateway.rest
        # Binds now: a taken port fails start-up.  Ryu's hub is eventlet: serve on it.
        self.rest_server = rest.make(host, port, api, green=GREEN_HUB)
        pacer = getattr(self.rest_server, "pacer", None)  # the REST plane's CPU budget
        if pacer is not None:
            self.service.rest_pacing = lambda: pacer.stats
        fastlane.install(self.fast_lane)
        LOG.info(
            "gateway %s: dpid %#x, %d VIP(s), REST on %s:%d (writes %s), state file %s",
            self.gateway.name,
            self.gateway.dpid,
            len(self.deployment.vips),
            host,
            port,
            "need a bearer token" if current.token else "open",
            current.state_file,
        )

    def _restore_history(self, saved) -> None:
        """Second chance's history as the earlier run kept it (the state file): its tables
        built (on the workers, as at start), then handed to the balancer, so that a connection
        moved to this gateway just after its restart still reaches the VM it was on."""
        vips = self.core.balancer.vips
        specs = {
            kept.spec for name, entries in saved.history.items() if name in vips for kept in entries
        }
        requests = [TableRequest(f"(history) {index}", spec) for index, spec in enumerate(specs)]
        tables = {}
        if GREEN_HUB or self.builder.in_process:
            tables = {r.spec: self.core.balancer.cache.get_or_build(r.spec) for r in requests}
        elif requests:
            lock = threading.Lock()

            def keep(request, table, error) -> None:
                if error is None:
                    with lock:
                        tables[request.spec] = table

            self.builder.build_many(requests, keep)
        restored = self.core.balancer.restore_history(saved, tables, self.clock(), time.time())
        LOG.info("start-up: second chance's history: %d table(s) from the state file", restored)

    def _build_at_start(self, requests) -> None:
        """Every VIP's first table, before the app serves: on every core through the worker
        processes (``build_many``, each distinct table once), which load the compiled fill
        (~1.5 ms a table at 65,537 slots: 1,000 VIPs x 100 backends in about a second, against
        ~30 s for the plain loop), so that this process does not load numba (~125 MB).  Under
        an eventlet hub (no OS threads to wait on pipes) or building in this process, the
        compiled fill is loaded here and the tables built one after the other.  A table that
        cannot be built fails the start, as it always did."""
        if GREEN_HUB or self.builder.in_process:
            LOG.info("start-up: %d table(s), fill: %s", len(requests), maglev.warm_up())
            self.core.balancer.rebuild_now(requests, self.clock())
            return
        distinct = list({request.spec: request for request in requests}.values())
        built, lock = {}, threading.Lock()

        def keep(request, table, error) -> None:
            with lock:
                built[request.spec] = (table, error)

        started = time.monotonic()
        self.builder.build_many(distinct, keep)
        for request in requests:
            table, error = built[request.spec]
            if error is not None:
                raise error
            self.core.balancer.install_table(request, table, self.clock())
        LOG.info(
            "start-up: %d table(s) built on %d process(es) in %.2f s",
            len(distinct),
            self.builder.workers,
            time.monotonic() - started,
        )

    def start(self):
        settle_heap()
        thread = super().start()
        event_loop = self.threads[-1]  # what the framework's start() just spawned
        ticker = hub.spawn(supervision.reported("the health ticker", self._ticker))
        self.threads.append(ticker)
        # Not in self.threads: stop() joins those, and the server serves until the process ends.
        serve = supervision.reported("the REST server", self.rest_server.serve_forever)
        rest_thread = hub.spawn(serve)
        # The launcher ends the process if one of these ends (launcher.vital_threads).
        self.vital_threads = {
            "event loop": event_loop,
            "health ticker": ticker,
            "REST server": rest_thread,
        }
        return thread

    def call_on_loop(self, function, timeout: float = REST_CALL_TIMEOUT):
        """Run ``function`` on the event loop and return its result (or raise its error).
        Called from REST threads, whose CPU budget pays for the loop's time too
        (``pacing.charge``).  TimeoutError if the loop did not start it in time (it then
        never runs)."""
        done = hub.Event() if GREEN_HUB else threading.Event()
        outcome = {}
        lock = threading.Lock()  # the caller gives up, or the loop starts: not both

        def task():
            with lock:
                if outcome.get("abandoned"):
                    return  # the caller was told 503: the change must not happen later
                outcome["started"] = True
            started = time.thread_time()
            try:
                outcome["value"] = function()
            except BaseException as error:  # noqa: BLE001 - handed back to the caller
                outcome["error"] = error
            finally:
                outcome["cpu"] = time.thread_time() - started
                done.set()

        self.send_event(self.name, EventCall(task))
        if not done.wait(timeout):
            with lock:
                if not outcome.get("started"):
                    outcome["abandoned"] = True
                    raise TimeoutError(f"the controller did not answer within {timeout} s")
            done.wait()  # it started just now: its answer is moments away
        pacing.charge(outcome.get("cpu", 0.0))
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    def tables_ready(self, vip_names: list[str], timeout: float) -> bool:
        """Wait (on a REST thread) until each VIP's Maglev table is the one its backends and
        healthy set call for, or it is gone; False if that took longer than ``timeout``.  It
        reads two references per VIP off the loop (the balancer swaps the table in before its
        key: ``Balancer._swap``), so waiting costs the loop nothing."""
        deadline = time.monotonic() + timeout
        vips = self.core.balancer.vips
        while True:
            states = [vips.get(name) for name in vip_names]
            if all(state is None or state.table_current for state in states):
                return True
            if time.monotonic() >= deadline:
                return False
            hub.sleep(TABLE_WAIT_POLL)

    def apply(self, effects: Effects) -> None:
        """Do what the core asked for: its messages to the switch in one write (none while no
        switch is connected), its lines to the log, its Maglev tables to a build worker (one
        at a time; requests that come meanwhile wait for it to finish).  Called on the event
        loop or the switch's receiving thread, under ``core_lock`` either way."""
        if effects.messages and self.datapath is not None:
            self.datapath.send(b"".join(effects.messages))
        _log(effects)
        if effects.tables:
            self._tables_wanted += effects.tables
            self._start_builds()

    def _start_builds(self) -> None:
        if self._tables_wanted and not self._building:
            # Only what the VIPs still want: requests superseded while a build ran are not built.
            requests = self.core.wanted_tables(self._tables_wanted)
            self._tables_wanted = []
            if requests:
                self._building = True
                hub.spawn(self._build_tables, requests)

    def _build_tables(self, requests) -> None:
        """Worker: build each table (pure, ~1.5 ms compiled) and have the event loop install it
        as soon as it is built (a reference swap), so that a health change touching many VIPs
        brings each its table without waiting for all the others.  Under the native hub on
        every core (``TableBuilder.build_many``), newest request first (``wanted_tables`` keeps
        each VIP's latest; the latest changes are the ones clients now hit), a request the VIP
        no longer wants when its turn comes skipped.  A build that raises is handed back as
        its error: the core asks for it again later."""
        remaining = [len(requests)]
        count = threading.Lock()

        def deliver(request, table, error) -> None:
            with count:
                remaining[0] -= 1
                last = remaining[0] == 0
            install = functools.partial(self._install_table, request, table, error, last)
            self.send_event(self.name, EventCall(install))

        if GREEN_HUB:  # green threads: one build at a time off the hub, as before
            for request in requests:
                try:
                    table, error = _off_the_hub(self.builder.build, request.spec), None
                except Exception as problem:  # noqa: BLE001 - a worker must report, not vanish
                    table, error = None, problem
                deliver(request, table, error)
            return
        wanted = self.core.balancer.wants  # two dict reads: a stale answer only costs a build

        def skip(request) -> None:
            deliver(request, None, None)

        self.builder.build_many(list(reversed(requests)), deliver, wanted, skipped=skip)

    def _install_table(self, request, table, error, last: bool) -> None:
        if error is not None:
            effects = self.core.table_build_failed(request, error, self.clock())
        elif table is None:
            effects = Effects()  # superseded before its turn: not built
        else:
            effects = self.core.table_built(request, table, self.clock())
        if last:
            self._building = False
        self.apply(effects)
        self._start_builds()  # what was asked for while this worker built

    def _ticker(self) -> None:
        while self.is_active:
            due = self.clock() + HEALTH_TICK_SECONDS
            hub.sleep(HEALTH_TICK_SECONDS)
            if not self._tick_queued:  # a busy loop gets one tick, not a backlog
                self._tick_queued = True
                self._tick_due = due
                self.send_event(self.name, EventCall(self._health_tick))

    def _health_tick(self) -> None:
        """The tick, and how late it runs (the ticker's oversleep plus the loop's queue): the
        core's evidence of its own load (``overload.LoadMonitor.loop_lag``)."""
        self._tick_queued = False
        now = self.clock()
        self.apply(self.core.health_tick(now, lag=max(0.0, now - self._tick_due)))
        ids = self.saver.due(self.core.balancer, now)  # backend ids changed: saved off the loop
        if ids is not None:
            hub.spawn(self.saver.write_ids, *ids)

    @handler.set_ev_cls(EventCall)
    @_guarded
    def call(self, ev):
        ev.function()

    @handler.set_ev_cls(ofp_event.EventOFPSwitchFeatures, handler.CONFIG_DISPATCHER)
    @_guarded
    def switch_features(self, ev):
        # The reply's own datapath_id: the framework's handler sets ``datapath.id`` from it on
        # its own thread (native hub), which may not have happened yet (seen: None, and a
        # gateway that ignored its own switch for good).
        datapath, dpid = ev.msg.datapath, ev.msg.datapath_id
        if dpid != self.gateway.dpid:
            LOG.warning(
                "ignoring switch dpid %#x (this controller serves %#x)", dpid, self.gateway.dpid
            )
            return
        self.datapath = datapath
        LOG.info("switch %#x connected", dpid)
        self.apply(self.core.on_connect(self.clock()))

    @handler.set_ev_cls(ofp_event.EventOFPPortDescStatsReply, handler.MAIN_DISPATCHER)
    @_guarded
    def port_desc(self, ev):
        if ev.msg.datapath is not self.datapath:
            return
        ports = {port.name.decode(errors="replace"): port.port_no for port in ev.msg.body}
        self.apply(self.core.on_ports(ports, self.clock()))

    @handler.set_ev_cls(ofp_event.EventOFPPortStatus, handler.MAIN_DISPATCHER)
    @_guarded
    def port_status(self, ev):
        """A port added, deleted or changed after the switch connected: the core decides."""
        msg = ev.msg
        if msg.datapath is not self.datapath:
            return
        name = msg.desc.name.decode(errors="replace")
        LOG.info("port %s (%d) %s", name, msg.desc.port_no, PORT_EVENTS.get(msg.reason, "changed"))
        self.apply(self.core.on_port_status(msg.reason, name, msg.desc.port_no, self.clock()))

    @handler.set_ev_cls(
        [
            ofp_event.EventOFPMeterFeaturesStatsReply,
            ofp_event.EventOFPMeterStatsReply,
            ofp_event.EventOFPErrorMsg,
        ],
        [handler.CONFIG_DISPATCHER, handler.MAIN_DISPATCHER],
    )
    @_guarded
    def switch_reports(self, ev):
        """Meter features and statistics (the flood guard's) and errors: the core reads the
        message as the switch sent it."""
        if ev.msg.datapath is self.datapath:
            self.apply(self.core.on_messages([bytes(ev.msg.buf)], self.clock()))

    def fast_lane(self, datapath, messages: list[bytes]) -> None:
        """The fast lane's sink: a burst of raw packet-ins and flow-removeds, on the switch's
        receiving thread."""
        if datapath is not self.datapath:
            return  # a switch this controller does not serve
        try:
            with self.core_lock:
                self.apply(self.core.on_messages(messages, self.clock()))
        except Exception:  # noqa: BLE001 - it would end the switch's connection
            self.handler_errors += 1
            LOG.exception("a burst of %d messages failed (counted, dropped)", len(messages))

    @handler.set_ev_cls(ofp_event.EventOFPStateChange, handler.DEAD_DISPATCHER)
    @_guarded
    def switch_gone(self, ev):
        if ev.datapath is self.datapath:
            LOG.warning("switch %#x disconnected", ev.datapath.id)
            self.datapath = None
            self.apply(self.core.on_disconnect(self.clock()))


def _log(effects: Effects) -> None:
    for notice in effects.notices:
        LOG.info("%s", notice)
    for warning in effects.warnings:
        LOG.warning("%s", warning)
    for error in effects.errors:
        LOG.error("%s", error)
