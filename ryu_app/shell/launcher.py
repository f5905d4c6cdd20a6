"""``lockstep-gateway --config FILE --gateway NAME``: one controller process for one gateway.

os-ken 4.x ships no manager command; this is ours: validate the deployment, configure the
framework's OpenFlow listener, load ``ryu_app.shell.app`` and run until killed, or until one of its
vital threads ends (``vital_threads``): then it logs an ERROR naming the thread and exits with
``EXIT_THREAD_ENDED``, so that a supervisor (systemd ``Restart=always``) starts it again rather
than leaving a controller that answers REST calls and never sees its switch.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ryu_app.api import statefile
from ryu_app.shell.settings import Settings
from topology import deployment as deployment_file
from topology.schema import ConfigError, Invalid, Problem, endpoint

EXIT_CONFIG = 2
EXIT_THREAD_ENDED = 70  # sysexits' EX_SOFTWARE: a vital thread ended
# What the thread an app's start() returned does, where it is not the app's event loop.
MAIN_THREAD_NAMES = {"ofp_event": "OpenFlow listener"}
LOG = logging.getLogger("lockstep.gateway")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lockstep-gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="deployment file (YAML)")
    parser.add_argument("--gateway", required=True, help="name of this gateway in the file")
    parser.add_argument("--openflow", help="override the OpenFlow listen ADDRESS:PORT")
    parser.add_argument("--rest", help="override the REST listen ADDRESS:PORT")
    parser.add_argument(
        "--state-file",
        help="where REST changes are kept (default: the gateway's state_file, else "
        "/var/lib/lockstep/NAME.json)",
    )
    parser.add_argument(
        "--token-file",
        help="file holding the bearer token REST writes must carry "
        "(or set LOCKSTEP_TOKEN); without one, writes are open to whoever reaches the API",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> Settings:
    """The deployment and this gateway, with command-line overrides and the state file applied."""
    deployment = deployment_file.load(args.config)
    try:
        gateway = deployment.gateway(args.gateway)
    except KeyError as error:
        raise ConfigError([Problem("--gateway", error.args[0])]) from None
    overrides = {}
    for flag in ("openflow", "rest"):
        value = getattr(args, flag)
        if value is not None:
            try:
                overrides[flag] = endpoint(value)
            except Invalid as error:
                raise ConfigError([Problem(f"--{flag}", str(error))]) from None
    if args.state_file:
        overrides["state_file"] = args.state_file
    gateway = dataclasses.replace(gateway, **overrides)
    state_file = Path(gateway.state_file or statefile.default_path(gateway.name))
    saved = _read_state(state_file, deployment)
    if saved is None:
        return Settings(deployment, gateway, state_file, _token(args))
    if saved.vips is not None:
        deployment = dataclasses.replace(deployment, vips=tuple(saved.vips))
    return Settings(
        deployment, gateway, state_file, _token(args), saved.ids, saved.vips is not None
    )


def _read_state(path: Path, deployment) -> statefile.SavedState | None:
    """What the state file holds, if there is one.  Its VIPs, if it has them, win over the
    deployment file's: they hold the changes made through the REST API since it was written."""
    try:
        saved = statefile.read_state(path)
        if saved is None or saved.vips is None:
            return saved
        changed = dataclasses.replace(deployment, vips=tuple(saved.vips))
        problems = deployment_file.change_problems(deployment, changed)
        if problems:
            raise ConfigError(problems)
    except ConfigError as error:
        raise ConfigError(
            [Problem(f"state file {path}: {p.path}".rstrip(": "), p.reason) for p in error.problems]
        ) from None
    return saved


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError([Problem("--token-file", error.strerror or str(error))]) from None
        if not token:
            raise ConfigError([Problem("--token-file", "the file is empty")])
        return token
    return os.environ.get("LOCKSTEP_TOKEN") or None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        current = resolve(args)
    except ConfigError as error:
        print(f"lockstep-gateway: {args.config}: {len(error.problems)} problem(s)", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG

    from ryu_app.shell import compat, settings, supervision  # noqa: PLC0415 - once config is good

    _raise_descriptor_limit(supervision)
    settings.configure(current)
    for stale in statefile.remove_stale_temporaries(current.state_file):
        logging.getLogger("lockstep.gateway").warning("removed %s (a save cut short)", stale)
    gateway = current.gateway
    # Importing app_manager registers the framework's command-line options; they must exist
    # before CONF is parsed, and can be overridden only after.
    app_manager = compat.load("base.app_manager")
    hub = compat.load("lib.hub")
    cfg = compat.load("cfg")
    cfg.CONF(args=[], project=compat.FRAMEWORK)
    host, port = gateway.openflow
    cfg.CONF.set_override("ofp_listen_host", host)
    cfg.CONF.set_override("ofp_tcp_listen_port", port)
    compat.guard_openflow_listener()
    manager = app_manager.AppManager.get_instance()
    manager.load_apps(["ryu_app.shell.app"])
    contexts = manager.create_contexts()
    try:
        manager.instantiate_apps(**contexts)
    except OSError as error:  # the REST listener could not bind
        print(f"lockstep-gateway: cannot start: {error}", file=sys.stderr)
        return 1
    LOG.info("OpenFlow listening on %s:%d", host, port)
    try:
        ended = supervision.first_to_end(vital_threads(manager.applications), hub.sleep)
    except KeyboardInterrupt:
        manager.close()
        _exit(0)
    LOG.error(
        "%s ended while the controller was running: exiting with status %d so that a "
        "supervisor starts the controller again",
        ended,
        EXIT_THREAD_ENDED,
    )
    _exit(EXIT_THREAD_ENDED)
    return EXIT_THREAD_ENDED  # not reached


def _raise_descriptor_limit(supervision) -> None:
    before, now, hard = supervision.raise_descriptor_limit()
    if now > before:
        LOG.info("descriptor limit raised from %d to %d (hard limit %d)", before, now, hard)
    else:
        LOG.info("descriptor limit %d (hard limit %d)", now, hard)


def vital_threads(applications: Mapping[str, object]) -> dict[str, object]:
    """Every thread whose end would leave the controller half alive, by a name for the log:
    each app's event loop and the thread its ``start()`` returned (for the framework's
    ``ofp_event`` app, the OpenFlow listener), or what an app lists itself in its
    ``vital_threads`` (ours: event loop, health ticker, REST server)."""
    vital = {}
    for name, app in applications.items():
        own = getattr(app, "vital_threads", None)
        if own is not None:
            vital.update({f"{name}'s {label}": thread for label, thread in own.items()})
            continue
        for number, thread in enumerate(app.threads):
            vital[f"{name}'s " + ("event loop" if number == 0 else f"thread {number}")] = thread
        main = app.main_thread
        if main is not None and main not in app.threads:
            vital[f"{name}'s {MAIN_THREAD_NAMES.get(name, 'main thread')}"] = main
    return vital


def _exit(status: int) -> None:
    """End the process now: the framework's native threads are not daemons, so returning from
    ``main`` would wait for them (forever: the OpenFlow listener never returns)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
