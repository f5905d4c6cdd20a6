"""``python -m fleetsim``: run the events x mechanisms on one warm fleet and print markdown."""

from __future__ import annotations

import argparse
import resource
import sys
import time

from fleetsim import engine, population, report, resilience, scenarios
from fleetsim.rule import MECHANISMS
from ryu_app.core import maglev

EXPERIMENTS = ("events", "resilience")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fleetsim", description=__doc__)
    parser.add_argument("--gateways", type=int, default=64)
    parser.add_argument("--backends", type=int, default=1000)
    parser.add_argument("--flows", type=int, default=1_000_000, help="open at time 0")
    parser.add_argument("--table-size", type=int, default=65537)
    parser.add_argument("--ecmp", choices=("modulo", "resilient"), default="modulo")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mechanisms", default=",".join(MECHANISMS))
    parser.add_argument("--events", default="", help="comma-separated substrings (default all)")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument(
        "--restart-history",
        choices=("lost", "kept", "both"),
        default="both",
        help="what a restarted gateway keeps of its table history: lost (today's controller), "
        "kept (the state file keeps it), or both (each restart event twice)",
    )
    parser.add_argument("--resilience-repeats", type=int, default=20)
    parser.add_argument("--exchange-delay", type=float, default=0.2)
    parser.add_argument("--exchange-rate", type=float, default=10_000.0)
    return parser.parse_args(argv)


def run_events(args: argparse.Namespace) -> None:
    settings = engine.Settings(
        args.gateways,
        args.backends,
        args.table_size,
        args.ecmp,
        exchange_delay=args.exchange_delay,
        exchange_rate=args.exchange_rate,
        seed=args.seed,
    )
    kinds = ("lost", "kept") if args.restart_history == "both" else (args.restart_history,)
    menu = scenarios.history_variants(scenarios.events(args.gateways, args.backends), kinds)
    chosen = [
        event
        for event in menu
        if not args.events or any(part in event.name for part in args.events.split(","))
    ]
    horizon = max(scenarios.horizon_of(event) for event in chosen)
    started = time.perf_counter()
    flows = population.generate(args.flows, horizon, args.table_size, args.seed)
    print(
        f"population: {args.flows:,} open at 0, {len(flows):,} over {horizon:.0f} s "
        f"({time.perf_counter() - started:.1f} s to make)\n",
        flush=True,
    )
    outcomes = []
    for event in chosen:
        for mechanism in args.mechanisms.split(","):
            result = engine.run(flows, settings, mechanism, event)
            outcomes.append(result)
            print(f"<!-- {event.name} / {mechanism}: {result.seconds:.1f} s -->", flush=True)
    print("\n### Connections broken by the balancer, per event and mechanism\n")
    print(report.broken_table(outcomes))
    if any(scenarios.restarts(event) for event in chosen):
        print(report.RESTART_NOTE)
    print("\n### Why\n")
    print(report.reasons_table(outcomes))
    print("\n### What each mechanism costs\n")
    print(report.costs_table(outcomes))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    maglev.warm_up()
    print(
        f"## Fleet simulation: {args.gateways} gateways x {args.backends:,} backends x "
        f"{args.flows:,} connections, table {args.table_size:,}, ECMP {args.ecmp}, "
        f"seed {args.seed}\n"
    )
    experiments = args.experiments.split(",")
    if "events" in experiments:
        run_events(args)
    if "resilience" in experiments:
        print("\n### Maglev resilience: table entries changed vs backends failing at once\n")
        curve = resilience.curve(args.resilience_repeats, args.seed)
        print(report.resilience_table(curve, args.resilience_repeats))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall time {time.perf_counter() - started:.0f} s, peak RSS {peak:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
