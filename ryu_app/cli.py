"""``lockstep``: the operator's command-line tool.

    lockstep check FILE
    lockstep lookup --backend NAME=TUNNEL_IP[:WEIGHT] ... [--table-size P] [--hash MODE]
                    [--down NAME ...]  < flows.csv
    lockstep lookup --config FILE --vip NAME [--down NAME ...]  < flows.csv

``lookup`` answers offline, from the hash alone, exactly what every gateway whose healthy set is
(all backends minus ``--down``) picks for a new flow.  Input rows are
``src_ip,src_port,dst_ip,dst_port,proto``; an optional header row is passed through.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from ryu_app.core.flowkey import HASH_5TUPLE, HASH_MODES, flow_from_fields, flow_hash, hash_key
from ryu_app.core.maglev import DEFAULT_TABLE_SIZE, MAX_WEIGHT, MaglevTable, build_table
from topology import deployment as deployment_file
from topology.schema import ConfigError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
CSV_HEADER = "src_ip,src_port,dst_ip,dst_port,proto"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # e.g. `lockstep lookup ... | head`
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockstep", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate a deployment file")
    check.add_argument("file")
    check.set_defaults(run=run_check)

    lookup = commands.add_parser(
        "lookup",
        help="which backend each flow (CSV on stdin) goes to",
        description="Reads src_ip,src_port,dst_ip,dst_port,proto rows on stdin and writes them "
        "back with the chosen backend appended.  Bad rows are reported on stderr and skipped.",
    )
    lookup.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="NAME=TUNNEL_IP[:WEIGHT]",
        help="a backend (repeat); weight defaults to 1",
    )
    lookup.add_argument(
        "--table-size", type=int, default=None, help=f"prime (default {DEFAULT_TABLE_SIZE})"
    )
    lookup.add_argument(
        "--hash", choices=HASH_MODES, default=None, help=f"flow key (default {HASH_5TUPLE})"
    )
    lookup.add_argument(
        "--config", help="take backends, table size and hash from this deployment file"
    )
    lookup.add_argument("--vip", help="the VIP of --config to use")
    lookup.add_argument(
        "--down", action="append", default=[], metavar="NAME", help="treat as unhealthy (repeat)"
    )
    lookup.set_defaults(run=run_lookup)
    return parser


def run_check(args: argparse.Namespace) -> int:
    try:
        deployment = deployment_file.load(args.file)
    except ConfigError as error:
        print(f"{args.file}: {len(error.problems)} problem(s)", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_PROBLEMS
    backends = {b.name for vip in deployment.vips for b in vip.backends}
    print(
        f"OK: {args.file}: {len(deployment.vips)} VIP(s), {len(backends)} backend(s), "
        f"{len(deployment.gateways)} gateway(s)"
    )
    return EXIT_OK


def parse_backend_arg(text: str) -> tuple[str, str, int]:
    """'NAME=TUNNEL_IP[:WEIGHT]' (IPv6: 'NAME=[ADDR]:WEIGHT' or 'NAME=ADDR') -> parts."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--backend {text!r}: expected NAME=TUNNEL_IP[:WEIGHT]")
    address, weight_text = rest, "1"
    if rest.startswith("["):
        address, _, tail = rest[1:].partition("]")
        weight_text = tail[1:] if tail.startswith(":") else (tail or "1")
    elif rest.count(":") == 1:
        address, weight_text = rest.split(":")
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise ValueError(f"--backend {text!r}: {address!r} is not an IP address") from None
    if not weight_text.isdigit() or int(weight_text) > MAX_WEIGHT:
        raise ValueError(f"--backend {text!r}: weight must be an integer 0..{MAX_WEIGHT}")
    return name, address, int(weight_text)


def run_lookup(args: argparse.Namespace) -> int:
    try:
        table, mode = _lookup_table(args)
    except (ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        print(f"lockstep lookup: {message}", file=sys.stderr)
        return EXIT_USAGE
    bad = annotate(sys.stdin, sys.stdout, sys.stderr, table, mode)
    return EXIT_PROBLEMS if bad else EXIT_OK


def _lookup_table(args: argparse.Namespace) -> tuple[MaglevTable, str]:
    if args.config:
        if args.backend or args.table_size is not None or args.hash:
            raise ValueError(
                "--config takes backends, table size and hash from the file; drop the others"
            )
        if not args.vip:
            raise ValueError("--config needs --vip NAME")
        try:
            vip = deployment_file.load(args.config).vip(args.vip)
        except ConfigError as error:
            raise ValueError(
                f"{args.config} is not valid:\n  " + "\n  ".join(map(str, error.problems))
            ) from None
        pairs = [(b.name, b.weight) for b in vip.backends]
        table_size, mode = vip.table_size, vip.hash
    else:
        if args.vip:
            raise ValueError("--vip needs --config FILE")
        if not args.backend:
            raise ValueError(
                "give --backend NAME=TUNNEL_IP[:WEIGHT] (repeat) or --config FILE --vip NAME"
            )
        pairs = []
        for text in args.backend:
            name, _, weight = parse_backend_arg(text)
            pairs.append((name, weight))
        table_size = DEFAULT_TABLE_SIZE if args.table_size is None else args.table_size
        mode = args.hash or HASH_5TUPLE
    unknown = set(args.down) - {name for name, _ in pairs}
    if unknown:
        raise ValueError(f"--down names unknown backend(s): {', '.join(sorted(unknown))}")
    down = set(args.down)
    return build_table([(n, w) for n, w in pairs if n not in down], table_size), mode


def annotate(rows: Iterable[str], out: TextIO, err: TextIO, table: MaglevTable, mode: str) -> int:
    """Append the backend to each CSV row; returns the number of bad rows."""
    bad = 0
    for number, line in enumerate(rows, start=1):
        row = line.rstrip("\r\n")
        if not row.strip():
            continue
        if number == 1 and row.replace(" ", "") == CSV_HEADER:
            out.write(f"{row},backend\n")
            continue
        fields = row.split(",")
        if len(fields) != 5:
            bad += 1
            err.write(f"line {number}: expected 5 fields ({CSV_HEADER}), got {len(fields)}\n")
            continue
        try:
            flow = flow_from_fields(*fields)
        except ValueError as error:
            bad += 1
            err.write(f"line {number}: {error}\n")
            continue
        out.write(f"{row},{table.lookup(flow_hash(hash_key(flow, mode))) or ''}\n")
    return bad


if __name__ == "__main__":
    sys.exit(main())
