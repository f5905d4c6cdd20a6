"""The Lockstep demo: independent gateways keep connections alive through failures.

Builds the emulated deployment (``lockstep_topo.py``) from a deployment file on a private Open
vSwitch, runs the scenarios (``scenarios.py``) with real TCP traffic, prints a results table and
writes ``report.json``, ``summary.txt`` and PNG plots to the output folder.  Exit status 1 if
any promise was broken, 2 if the emulation could not be set up.

    python mininet/demo.py [--config FILE] [--clients N] [--gateways N] [--vms N] [--out DIR]
                           [--only SCENARIO ...] [--quick]

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

from lab.ovs import PrivateOVS  # noqa: E402
from topology import deployment as deployment_file  # noqa: E402

MIN_GATEWAYS, MIN_VMS = 2, 3  # the scenarios need a gateway to fail over to and VMs to spare

ORDER = [
    "spread",
    "gateway-nexthop",
    "gateway-kill",
    "vm-failure",
    "drain",
    "controller-restart",
    "scale-out",
    "disagreement",
]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(lockstep_topo.DEFAULT_CONFIG))
    parser.add_argument("--clients", type=int)
    parser.add_argument("--gateways", type=int, help="gateways in the ECMP group at the start")
    parser.add_argument("--vms", type=int)
    parser.add_argument("--out", default="demo-out", help="output folder (%(default)s)")
    parser.add_argument("--only", action="append", choices=ORDER, help="run only these (repeat)")
    parser.add_argument("--quick", action="store_true", help="smaller counts (the test suite's)")
    parser.add_argument("--verbose", action="store_true", help="Mininet's own log too")
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (a CI timeout, kill) cleans up like Ctrl-C


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("demo: must run as root (Mininet creates namespaces and links)", file=sys.stderr)
        return 2
    selected = [name for name in ORDER if not args.only or name in args.only]
    source = deployment_file.load(args.config)
    active = args.gateways or len(source.gateways)
    vm_count = args.vms or len({b.name for v in source.vips for b in v.backends})
    if active < MIN_GATEWAYS or vm_count < MIN_VMS:
        print(
            f"demo: needs at least {MIN_GATEWAYS} gateways and {MIN_VMS} VMs "
            f"(got {active} and {vm_count})",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Each run starts from nothing: its OVS database, controller logs and state files (which
    # would otherwise carry VIP changes into the next run) live in a fresh work folder.
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    signal.signal(signal.SIGTERM, _interrupt)
    setLogLevel("info" if args.verbose else "warning")
    counts = scenarios.Counts.quick() if args.quick else scenarios.Counts()
    started = time.monotonic()
    results = {
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scenarios": [],
    }
    ovs = PrivateOVS(work / "ovs")
    net = world = None
    try:
        say(f"starting a private Open vSwitch in {ovs.rundir}")
        ovs.start()
        os.environ.update({k: v for k, v in ovs.env.items() if k.startswith("OVS_")})
        spare = "scale-out" in selected
        topo = lockstep_topo.LockstepTopo(
            config=args.config,
            clients=args.clients,
            gateways=active + 1 if spare else active,
            vms=args.vms,
            log_dir=work,
        )
        deployment = topo.plan.deployment
        vm_count = sum(1 for h in topo.plan.hosts.values() if h.role == "vm")
        say(
            f"building {len(deployment.clients)} clients, a router, "
            f"{len(deployment.gateways)} gateways and {vm_count} VMs"
        )
        net = Mininet(topo=topo, controller=None, autoSetMacs=False, build=False)
        net.build()  # inside the try: a failed build is cleaned up too
        net.start()
        world = scenarios.World(net, topo.plan, topo.config_path, log=say)
        newcomer = None
        if spare:
            newcomer = world.gateways[-1]
            newcomer.stop(deleteIntfs=False)  # joins later, in the scale-out scenario
            world.gateways = world.gateways[:-1]
        world.route(world.gateways)
        say("waiting for every gateway to connect and see every VM healthy")
        world.wait_ready()
        vip = deployment.vips[0]
        results["topology"] = {
            "clients": len(deployment.clients),
            "gateways": [g.name for g in deployment.gateways],
            "vms": [b.name for b in vip.backends],
            "vip": f"{vip.address}:{vip.port}",
            "weights": {b.name: b.weight for b in vip.backends},
        }
        for name in selected:
            say(f"scenario {name} ...")
            try:
                if name == "scale-out":
                    result = scenarios.scale_out(world, counts, newcomer)
                    world.gateways.append(newcomer)
                else:
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
            results["scenarios"].append(result)
            failed = [c for c in result["checks"] if c["ok"] is False]
            say(f"scenario {name}: {'PASS' if result['passed'] else 'FAIL'}")
            for check in failed:
                say(f"    broken: {check['what']}: {check['detail']}")
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        results.setdefault("scenarios", [])
        results["interrupted"] = True
    except Exception:  # noqa: BLE001 - set-up failed: report it, clean up, exit 2
        traceback.print_exc()
        results["setup_failed"] = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if world is not None:
                world.stop_traffic()
            if net is not None:
                say("stopping the emulation")
                net.stop()
        finally:
            ovs.stop()
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
