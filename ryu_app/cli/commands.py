"""``lockstep``: the operator's command-line tool.

    lockstep check FILE
    lockstep lookup --backend NAME=TUNNEL_IP[:WEIGHT] ... [--table-size P] [--hash MODE]
                    [--placement hash|port-bits]
                    [--panic-threshold PERCENT] [--down NAME ...]  < flows.csv
    lockstep lookup --config FILE --vip NAME [--down NAME ...]  < flows.csv
    lockstep status  (--gateway URL ... | --config FILE) [--json]
    lockstep vip list|put|delete|weight|add-backend|remove-backend ...
                     (--gateway URL ... | --config FILE) [--token-file F]

``lookup`` answers offline, from the VIP's placement alone (``core.slots``: the hash, or the
source port's bits), exactly what every gateway whose healthy set is (all backends minus
``--down``) picks for a new flow (in panic, when too few are healthy, over all backends:
``core.serving``, the gateways' own rule).  Input rows are
``src_ip,src_port,dst_ip,dst_port,proto``; an optional header row is passed through.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

import yaml

from ryu_app.cli.remote import (
    Remote,
    Unreachable,
    disagreements,
    gateway_urls,
    skewed_slots,
    status_table,
)
from ryu_app.core.flowkey import PROTO_TCP, flow_from_fields
from ryu_app.core.maglev import MaglevTable, build_table
from ryu_app.core.model import (
    DEFAULT_TABLE_SIZE,
    HASH_5TUPLE,
    HASH_MODES,
    MAX_WEIGHT,
    PLACEMENT_HASH,
    PLACEMENT_PORT_BITS,
    PLACEMENTS,
    HealthCheck,
    slot_table_size,
)
from ryu_app.core.serving import serving_backends
from ryu_app.core.slots import placement_index
from topology import deployment as deployment_file
from topology.schema import ConfigError, Invalid

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
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
    _add_lookup(commands)
    status = commands.add_parser(
        "status",
        help="gateways side by side; flags any disagreement",
        description="Exit 0: all gateways agree (configuration and healthy sets); 1: they "
        "disagree, or a switch-mode VIP's slots are badly uneven (SKEWED: clients' source "
        "ports do not vary in bits 1..k); 3: a gateway did not answer.",
    )
    _targets(status, writes=False)
    status.add_argument("--json", action="store_true", help="print the raw answers as JSON")
    status.set_defaults(run=run_status)
    _add_vip(commands)
    return parser


def _add_lookup(commands) -> None:
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
        "--table-size",
        type=int,
        default=None,
        help=f"prime (default {DEFAULT_TABLE_SIZE}); with --placement port-bits a power of two "
        "(default: 32 slots per backend, 256..4096)",
    )
    lookup.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default=None,
        help=f"by the flow key's hash or the source port's bits (default {PLACEMENT_HASH})",
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
    lookup.add_argument(
        "--panic-threshold",
        type=int,
        default=None,
        metavar="PERCENT",
        help="with --backend: below this share of healthy backends, all take new flows "
        f"(default {HealthCheck.panic_threshold}; 0: never)",
    )
    lookup.set_defaults(run=run_lookup)


def _add_vip(commands) -> None:
    """``lockstep vip ACTION``: each action a change made on every gateway named."""
    vip = commands.add_parser("vip", help="manage VIPs on one or several gateways at once")
    actions = vip.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the VIPs of each gateway")
    _targets(listing, writes=False)
    listing.set_defaults(run=run_vip_list)
    put = actions.add_parser(
        "put", help="create or replace VIPs from a file (one VIP, or a 'vips:' list)"
    )
    put.add_argument("file")
    _targets(put)
    put.set_defaults(run=run_vip_put)
    delete = actions.add_parser("delete", help="delete a VIP")
    delete.add_argument("name")
    _targets(delete)
    delete.set_defaults(run=run_vip_delete)
    weight = actions.add_parser("weight", help="set a backend's weight (0 drains it)")
    weight.add_argument("vip")
    weight.add_argument("backend")
    weight.add_argument("weight", type=int)
    _targets(weight)
    weight.set_defaults(run=run_vip_weight)
    add = actions.add_parser("add-backend", help="add a backend to a VIP")
    add.add_argument("vip")
    add.add_argument("--name", required=True)
    add.add_argument("--tunnel-ip", required=True)
    add.add_argument("--mac", required=True)
    add.add_argument("--weight", type=int, default=1)
    _targets(add)
    add.set_defaults(run=run_vip_add_backend)
    remove = actions.add_parser("remove-backend", help="remove a backend from a VIP")
    remove.add_argument("vip")
    remove.add_argument("backend")
    _targets(remove)
    remove.set_defaults(run=run_vip_remove_backend)


def _targets(parser: argparse.ArgumentParser, writes: bool = True) -> None:
    parser.add_argument(
        "--gateway",
        action="append",
        default=[],
        metavar="URL",
        help="a gateway's REST API, e.g. http://127.0.0.1:8081 (repeat)",
    )
    parser.add_argument("--config", help="every gateway of this deployment file")
    if writes:
        parser.add_argument(
            "--token-file", help="bearer token for writes (default: $LOCKSTEP_TOKEN)"
        )


def run_check(args: argparse.Namespace) -> int:
    try:
        deployment = deployment_file.load(args.file)
    except ConfigError as error:
        print(f"{args.file}: {len(error.problems)} problem(s)", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_PROBLEMS
    for warning in deployment_file.deployment_warnings(deployment):
        print(f"WARNING: {warning}", file=sys.stderr)  # valid: the exit code stays 0
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
    if not weight_text.isascii() or not weight_text.isdigit() or int(weight_text) > MAX_WEIGHT:
        raise ValueError(f"--backend {text!r}: weight must be an integer 0..{MAX_WEIGHT}")
    return name, address, int(weight_text)


def run_lookup(args: argparse.Namespace) -> int:
    try:
        table, mode, placement = _lookup_table(args)
    except (ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) else str(error)
        print(f"lockstep lookup: {message}", file=sys.stderr)
        return EXIT_USAGE
    bad = annotate(sys.stdin, sys.stdout, sys.stderr, table, mode, placement)
    return EXIT_PROBLEMS if bad else EXIT_OK


def _lookup_table(args: argparse.Namespace) -> tuple[MaglevTable, str, str]:
    """The table to look flows up in, the hash mode and the placement: the VIP's of
    ``--config``, or made of the options."""
    if args.config:
        if (
            args.backend
            or args.table_size is not None
            or args.hash
            or args.placement
            or args.panic_threshold is not None
        ):
            raise ValueError(
                "--config takes backends, table size, hash, placement and panic threshold from "
                "the file; drop the others"
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
        table_size, mode, threshold = vip.table_size, vip.hash, vip.health.panic_threshold
        placement = vip.placement
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
        placement = args.placement or PLACEMENT_HASH
        table_size = args.table_size
        if table_size is None:
            by_port = placement == PLACEMENT_PORT_BITS
            table_size = slot_table_size(len(pairs)) if by_port else DEFAULT_TABLE_SIZE
        mode = args.hash or HASH_5TUPLE
        threshold = args.panic_threshold
        if threshold is None:
            threshold = HealthCheck.panic_threshold
        try:  # the deployment file's rule for health.panic_threshold: one rule
            deployment_file.HEALTH_FIELDS.fields["panic_threshold"].convert(threshold)
        except Invalid as error:
            raise ValueError(f"--panic-threshold {error}") from None
    unknown = set(args.down) - {name for name, _ in pairs}
    if unknown:
        raise ValueError(f"--down names unknown backend(s): {', '.join(sorted(unknown))}")
    healthy = {name for name, _ in pairs} - set(args.down)
    backends, panic = serving_backends(pairs, healthy, threshold)
    if panic:
        print(
            f"lockstep lookup: in panic (under {threshold}% of the backends healthy): "
            "new flows go to all of them",
            file=sys.stderr,
        )
    return build_table(backends, table_size, placement), mode, placement


# ---- status and vip: talking to running gateways ----------------------------------------------


def _remotes(args: argparse.Namespace) -> list[Remote]:
    try:
        urls = gateway_urls(args.config, args.gateway)
    except ConfigError as error:
        raise ValueError(f"{args.config}: " + "; ".join(map(str, error.problems))) from None
    if not urls:
        raise ValueError("give --gateway URL (repeat) or --config FILE")
    token = os.environ.get("LOCKSTEP_TOKEN") or None
    if getattr(args, "token_file", None):
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as error:
            raise ValueError(f"--token-file: {error.strerror}") from None
    return [Remote(url, token) for url in urls]


def _usage_errors(run):
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except ValueError as error:
            print(f"lockstep {args.command}: {error}", file=sys.stderr)
            return EXIT_USAGE

    return wrapped


@_usage_errors
def run_status(args: argparse.Namespace) -> int:
    statuses, unreachable = {}, []
    for remote in _remotes(args):
        try:
            code, body = remote.call("GET", "/v1/status")
        except Unreachable as error:
            unreachable.append(str(error))
            continue
        if code != 200:
            unreachable.append(f"{remote.url}: HTTP {code}")
            continue
        statuses[remote.url] = body
    if args.json:
        print(json.dumps({"gateways": statuses, "unreachable": unreachable}, indent=1))
    elif statuses:
        print(status_table(statuses))
    problems = disagreements(statuses) if statuses else []
    skewed = skewed_slots(statuses)
    for line in unreachable:
        print(f"UNREACHABLE {line}", file=sys.stderr)
    for line in problems:
        print(f"DISAGREE {line}", file=sys.stderr)
    for line in skewed:
        print(f"SKEWED {line}", file=sys.stderr)
    if unreachable:
        return EXIT_UNREACHABLE
    if problems or skewed:
        return EXIT_PROBLEMS
    if not args.json:
        print(f"OK: {len(statuses)} gateway(s) agree")
    return EXIT_OK


def _each(remotes: list[Remote], method: str, path: str, body=None) -> int:
    """The same call on every gateway; one line per gateway; EXIT_PROBLEMS if any failed."""
    failed = 0
    for remote in remotes:
        try:
            code, answer = remote.call(method, path, body)
        except Unreachable as error:
            print(f"{remote.url}: unreachable: {error}", file=sys.stderr)
            failed += 1
            continue
        if code == 202:  # saved and applied; the gateway is still building its tables
            detail = answer.get("detail", "") if isinstance(answer, dict) else ""
            print(f"{remote.url}: 202 accepted, tables still being built: {detail}".rstrip(": "))
            continue
        if code < 300:
            print(f"{remote.url}: {code} OK")
            continue
        failed += 1
        message = answer.get("error", answer) if isinstance(answer, dict) else answer
        print(f"{remote.url}: HTTP {code}: {message}", file=sys.stderr)
        for problem in answer.get("problems", []) if isinstance(answer, dict) else []:
            print(f"  {problem['path']}: {problem['reason']}", file=sys.stderr)
    return EXIT_PROBLEMS if failed else EXIT_OK


@_usage_errors
def run_vip_list(args: argparse.Namespace) -> int:
    failed = 0
    for remote in _remotes(args):
        try:
            code, answer = remote.call("GET", "/v1/vips")
        except Unreachable as error:
            print(f"{remote.url}: unreachable: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{remote.url}:")
        for vip in answer["vips"] if code == 200 else []:
            backends = " ".join(f"{b['name']}({b['weight']})" for b in vip["backends"])
            where = f"[{vip['address']}]" if ":" in vip["address"] else vip["address"]
            print(f"  {vip['name']}  {vip['protocol']} {where}:{vip['port']}  {backends or '-'}")
    return EXIT_UNREACHABLE if failed else EXIT_OK


@_usage_errors
def run_vip_put(args: argparse.Namespace) -> int:
    """Validate every VIP locally first: a bad file reaches no gateway."""
    try:
        with open(args.file, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{args.file}: {error}") from None
    raw_vips = data["vips"] if isinstance(data, dict) and "vips" in data else [data]
    problems = []
    for index, raw in enumerate(raw_vips):
        try:
            deployment_file.parse_vip(raw, f"vips[{index}]" if len(raw_vips) > 1 else "")
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ValueError(f"{args.file}:\n  " + "\n  ".join(map(str, problems)))
    remotes = _remotes(args)
    return max(_each(remotes, "PUT", f"/v1/vips/{raw['name']}", raw) for raw in raw_vips)


@_usage_errors
def run_vip_delete(args: argparse.Namespace) -> int:
    return _each(_remotes(args), "DELETE", f"/v1/vips/{args.name}")


@_usage_errors
def run_vip_weight(args: argparse.Namespace) -> int:
    path = f"/v1/vips/{args.vip}/backends/{args.backend}"
    return _each(_remotes(args), "PATCH", path, {"weight": args.weight})


@_usage_errors
def run_vip_add_backend(args: argparse.Namespace) -> int:
    body = {"name": args.name, "tunnel_ip": args.tunnel_ip, "mac": args.mac, "weight": args.weight}
    try:
        deployment_file.parse_backend(body)
    except ConfigError as error:
        raise ValueError("; ".join(map(str, error.problems))) from None
    return _each(_remotes(args), "POST", f"/v1/vips/{args.vip}/backends", body)


@_usage_errors
def run_vip_remove_backend(args: argparse.Namespace) -> int:
    return _each(_remotes(args), "DELETE", f"/v1/vips/{args.vip}/backends/{args.backend}")


def annotate(
    rows: Iterable[str],
    out: TextIO,
    err: TextIO,
    table: MaglevTable,
    mode: str,
    placement: str = PLACEMENT_HASH,
) -> int:
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
        if placement == PLACEMENT_PORT_BITS and flow.proto != PROTO_TCP:
            bad += 1
            err.write(f"line {number}: {PLACEMENT_PORT_BITS} places tcp flows only\n")
            continue
        index = placement_index(flow, mode, placement, table.table_size)
        out.write(f"{row},{table.lookup(index) or ''}\n")
    return bad


if __name__ == "__main__":
    sys.exit(main())
