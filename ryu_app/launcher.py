"""``lockstep-gateway --config FILE --gateway NAME``: one controller process for one gateway.

os-ken 4.x ships no manager command; this is ours: validate the deployment, configure the
framework's OpenFlow listener, load ``ryu_app.app`` and run until killed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

from topology import deployment as deployment_file
from topology.schema import ConfigError, Invalid, endpoint

EXIT_CONFIG = 2


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lockstep-gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="deployment file (YAML)")
    parser.add_argument("--gateway", required=True, help="name of this gateway in the file")
    parser.add_argument("--openflow", help="override the OpenFlow listen ADDRESS:PORT")
    parser.add_argument("--rest", help="override the REST listen ADDRESS:PORT")
    parser.add_argument("--state-file", help="override the state file")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace):
    """The deployment and this gateway, with command-line overrides applied."""
    deployment = deployment_file.load(args.config)
    try:
        gateway = deployment.gateway(args.gateway)
    except KeyError as error:
        raise ConfigError([deployment_file.Problem("--gateway", error.args[0])]) from None
    overrides = {}
    for flag in ("openflow", "rest"):
        value = getattr(args, flag)
        if value is not None:
            try:
                overrides[flag] = endpoint(value)
            except Invalid as error:
                raise ConfigError([deployment_file.Problem(f"--{flag}", str(error))]) from None
    if args.state_file:
        overrides["state_file"] = args.state_file
    return deployment, dataclasses.replace(gateway, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        deployment, gateway = resolve(args)
    except ConfigError as error:
        print(f"lockstep-gateway: {args.config}: {len(error.problems)} problem(s)", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG

    from ryu_app import compat, settings  # noqa: PLC0415 - framework only once config is good

    settings.configure(deployment, gateway)
    # Importing app_manager registers the framework's command-line options; they must exist
    # before CONF is parsed, and can be overridden only after.
    app_manager = compat.load("base.app_manager")
    hub = compat.load("lib.hub")
    cfg = compat.load("cfg")
    cfg.CONF(args=[], project=compat.FRAMEWORK)
    host, port = gateway.openflow
    cfg.CONF.set_override("ofp_listen_host", host)
    cfg.CONF.set_override("ofp_tcp_listen_port", port)
    manager = app_manager.AppManager.get_instance()
    manager.load_apps(["ryu_app.app"])
    contexts = manager.create_contexts()
    services = manager.instantiate_apps(**contexts)
    logging.getLogger("lockstep.gateway").info("OpenFlow listening on %s:%d", host, port)
    try:
        hub.joinall(services)
    except KeyboardInterrupt:
        pass
    finally:
        manager.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
