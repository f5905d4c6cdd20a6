"""The Lockstep demo: independent gateways keep connections alive through failures.

Builds the emulated deployment (``lockstep_topo.py``) from a deployment file on a private Open
vSwitch, runs the scenarios (``scenarios.py`` lists them) with real TCP traffic, prints a results
table and writes ``report.json``, ``summary.txt`` and PNG plots to the output folder.  Exit
status 1 if any promise was broken, 2 if the emulation could not be set up.

    python mininet/demo.py [--config FILE] [--clients N] [--gateways N] [--vms N] [--out DIR]
                           [--only SCENARIO ...] [--quick] [--mode controller|switch|mixed]

``--mode`` says who places new flows: ``controller`` (the deployment file as it is), ``switch``
(every VIP placed by source-port bits and in switch mode on every gateway) or ``mixed`` (the
same placement everywhere, gateway 1 in controller mode, gateway 2 in switch mode, alternating):
the same scenarios, judged by the same user-visible outcomes (``lockstep_topo.mode_configs``).

Everything it starts (Open vSwitch daemons, controllers, servers, namespaces) is stopped on
exit, on Ctrl-C and on failure; nothing is killed by name.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # siblings: this folder is not a package (never shadow mininet)

import lockstep_topo  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
from mininet.log import setLogLevel  # noqa: E402
from mininet.net import Mininet  # noqa: E402
from scenario_result import Counts  # noqa: E402
from world import World  # noqa: E402

from lab.ovs import PrivateOVS  # noqa: E402
from topology import deployment as deployment_file  # noqa: E402

MIN_GATEWAYS, MIN_VMS = 2, 3  # the scenarios need a gateway to fail over to and VMs to spare

ORDER = list(scenarios.SCENARIOS)  # the order they run in


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(lockstep_topo.DEFAULT_CONFIG))
    parser.add_argument("--clients", type=int)
    parser.add_argument("--gateways", type=int, help="gateways in the ECMP group at the start")
    parser.add_argument("--vms", type=int)
    parser.add_argument("--out", default="demo-out", help="output folder (%(default)s)")
    parser.add_argument("--only", action="append", choices=ORDER, help="run only these (repeat)")
    parser.add_argument("--quick", action="store_true", help="smaller counts (the test suite's)")
    parser.add_argument(
        "--mode",
        choices=lockstep_topo.MODES,
        default="controller",
        help="who places new flows: each gateway's controller, its switch, or alternating "
        "(%(default)s)",
    )
    parser.add_argument("--verbose", action="store_true", help="Mininet's own log too")
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (a CI timeout, kill) cleans up like Ctrl-C


def main(argv=None) -> int:
    args = parse_args(argv)
    source = deployment_file.load(args.config)
    active = args.gateways or len(source.gateways)  # gateways in the ECMP group at the start
    problem = preflight(args, source, active)
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    selected = [name for name in ORDER if not args.only or name in args.only]
    out = Path(args.out).resolve()
    work = fresh_work_folder(out)
    signal.signal(signal.SIGTERM, _interrupt)
    setLogLevel("info" if args.verbose else "warning")
    counts = Counts.quick() if args.quick else Counts()
    started = time.monotonic()
    results = {
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": args.mode,
        "scenarios": [],
    }
    emulation = Emulation(PrivateOVS(work / "ovs"))
    try:
        spare = bool(scenarios.NEED_A_SPARE_GATEWAY.intersection(selected))
        emulation.start(args, work, active, spare)
        results["topology"] = topology_summary(emulation.world.plan.deployment)
        results["gateway_modes"] = emulation.world.modes()
        for name in selected:
            results["scenarios"].append(run_scenario(emulation.world, name, counts))
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        results["interrupted"] = True
    except Exception:  # noqa: BLE001 - set-up failed: report it, clean up, exit 2
        traceback.print_exc()
        results["setup_failed"] = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        emulation.stop()
    return report_results(results, out, started)


def preflight(args: argparse.Namespace, source, active: int) -> str | None:
    """Why the demo cannot run (not root, too few gateways or VMs), or None."""
    if os.geteuid() != 0:
        return "must run as root (Mininet creates namespaces and links)"
    vm_count = args.vms or len({b.name for v in source.vips for b in v.backends})
    if active < MIN_GATEWAYS or vm_count < MIN_VMS:
        return (
            f"needs at least {MIN_GATEWAYS} gateways and {MIN_VMS} VMs "
            f"(got {active} and {vm_count})"
        )
    return None


def fresh_work_folder(out: Path) -> Path:
    """Each run starts from nothing: its OVS database, controller logs and state files (which
    would otherwise carry VIP changes into the next run) live in a fresh work folder."""
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    return work


class Emulation:
    """The private Open vSwitch, the Mininet network and the scenarios' world, as far as they
    got: ``stop`` undoes whatever ``start`` did, even if it failed half-way."""

    def __init__(self, ovs: PrivateOVS):
        self.ovs = ovs
        self.net = None
        self.world: World | None = None

    def start(self, args: argparse.Namespace, work: Path, active: int, spare: bool) -> None:
        """OVS, then the network of ``active`` gateways (and one more if ``spare``: stopped at
        once, it is the world's ``spare``, for the scale-out scenario), routes to the gateways,
        and every gateway connected and seeing every VM healthy."""
        say(f"starting a private Open vSwitch in {self.ovs.rundir}")
        self.ovs.start()
        os.environ.update({k: v for k, v in self.ovs.env.items() if k.startswith("OVS_")})
        topo = lockstep_topo.LockstepTopo(
            config=args.config,
            clients=args.clients,
            gateways=active + 1 if spare else active,
            vms=args.vms,
            log_dir=work,
            mode=args.mode,
        )
        deployment = topo.plan.deployment
        vm_count = sum(1 for h in topo.plan.hosts.values() if h.role == "vm")
        modes = ", ".join(f"{g} {m}" for g, m in topo.gateway_modes.items())
        say(
            f"building {len(deployment.clients)} clients, a router, "
            f"{len(deployment.gateways)} gateways and {vm_count} VMs; {args.mode} mode ({modes})"
        )
        self.net = Mininet(topo=topo, controller=None, autoSetMacs=False, build=False)
        self.net.build()  # inside the caller's try: a failed build is cleaned up too
        self.net.start()
        world = self.world = World(self.net, topo.plan, topo.config_path, log=say)
        if spare:
            world.spare = world.gateways[-1]
            world.spare.stop(deleteIntfs=False)  # joins later, in the scale-out scenario
            world.gateways = world.gateways[:-1]
        world.route(world.gateways)
        say("waiting for every gateway to connect and see every VM healthy")
        world.wait_ready()

    def stop(self) -> None:
        try:
            if self.world is not None:
                self.world.stop_traffic()
            if self.net is not None:
                say("stopping the emulation")
                self.net.stop()
        finally:
            self.ovs.stop()


def topology_summary(deployment) -> dict:
    """What the report's headline and plots need of the deployment (its first VIP)."""
    vip = deployment.vips[0]
    return {
        "clients": len(deployment.clients),
        "gateways": [g.name for g in deployment.gateways],
        "vms": [b.name for b in vip.backends],
        "vip": f"{vip.address}:{vip.port}",
        "weights": {b.name: b.weight for b in vip.backends},
    }


def run_scenario(world: World, name: str, counts: Counts) -> dict:
    """One scenario's result; a scenario that raised is a failed result, not the end."""
    say(f"scenario {name} ...")
    try:
        result = scenarios.SCENARIOS[name](world, counts)
    except Exception as error:  # noqa: BLE001 - one broken scenario is a result too
        traceback.print_exc()
        result = {
            "name": name,
            "title": name,
            "passed": False,
            "checks": [{"what": "ran to the end", "ok": False, "detail": repr(error)}],
            "figures": {},
        }
    failed = [c for c in result["checks"] if c["ok"] is False]
    say(f"scenario {name}: {'PASS' if result['passed'] else 'FAIL'}")
    for check in failed:
        say(f"    broken: {check['what']}: {check['detail']}")
    return result


def report_results(results: dict, out: Path, started: float) -> int:
    """Write and print the report; the exit status (0 passed, 1 a promise broken, 2 the run
    did not happen: set-up failed or interrupted)."""
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["passed"] = bool(results["scenarios"]) and all(
        s["passed"] for s in results["scenarios"]
    )
    try:
        paths = report.write_all(results, out)
    except Exception as error:  # noqa: BLE001 - the table and JSON are written first
        paths = [out / "report.json", out / "summary.txt"]
        say(f"no plots: {error!r}")
    print()
    print(report.summary_table(results))
    say(f"report: {', '.join(str(p) for p in paths)}")
    if results.get("setup_failed") or results.get("interrupted"):
        return 2
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
