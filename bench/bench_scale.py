"""The control plane at scale (issue 15): two revisions side by side, in one run.

Run:  .venv/bin/python bench/bench_scale.py [--before 3c8f448] [--vips 1000] [--backends 100]

"Before" is a throw-away ``git worktree`` of a revision (default 3c8f448, before issue 15's
work), removed at the end; "after" is this working tree as it is.  Each side runs its own code
(``PYTHONPATH=<tree>``), driven by this tree's scripts, on the same deployment
(``scale_setup``: ``vips`` VIPs over the same ``backends`` VMs, weights that make every table
distinct).  Figures:

(a) start-up of a controller (``python -m ryu_app``, no switch): from spawn to GET /v1/status
    answering with every VIP's table current, and its RSS then; memory per VIP and per backend
    from the RSS of two more starts (half the VIPs, half the backends);
(b) one shared backend fails in every VIP (``scale_worker rebuild``): time to every table built
    and installed, packet-path p99 meanwhile;
(c) GET /v1/vips (time, size, paginated?), /metrics (size, series), the state file's write
    (``scale_worker statefile``), the probe send pattern (``scale_worker probes``, at
    ``--probe-vips`` x backends).

The controllers bind free ports, no switch connects; the three starts of a side hold
/tmp/lockstep-ovs.lock all the same (each is seconds to a minute of both cores), unless
``--no-lock``.  The machine's load
average is printed at the start and the end: the host is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale_setup as setup  # noqa: E402

from bench.before_after import add_worktree, describe, remove_worktree  # noqa: E402
from bench.procs import free_port, rss_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "scale_worker.py"
DEFAULT_BEFORE = "3c8f448"
LOCK_FILE = "/tmp/lockstep-ovs.lock"
START_LIMIT = 300.0
PAUSE = 2.0  # between two REST requests of the measurement


def get(port: int, path: str, timeout: float = 60.0) -> tuple[bytes, float]:
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        body = answer.read()
    return body, time.perf_counter() - started


@contextlib.contextmanager
def lab_lock(wanted: bool = True):
    if not wanted:
        yield
        return
    with open(LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ready(port: int) -> bool:
    """GET /v1/status answers and every VIP's table is current.  One request at a time, each
    waited for: its first render (every VIP's configuration digest, ~1.3 s of CPU at 1,000 x
    100) is paced by the REST plane's CPU budget, and a poll given up on would start another."""
    try:
        body, _ = get(port, "/v1/status", timeout=START_LIMIT)
    except urllib.error.HTTPError:
        return False
    except OSError:
        time.sleep(0.1)  # not listening yet
        return False
    vips = json.loads(body).get("vips", {})
    return bool(vips) and all(view.get("table_current") for view in vips.values())


def start_controller(tree: Path, vips: int, backends: int, workdir: Path, rest_too: bool) -> dict:
    """One controller's start-up (and, with ``rest_too``, its REST lists): figures."""
    rest_port, of_port = free_port(), free_port()
    config = workdir / f"scale-{vips}x{backends}.yaml"
    data = setup.deployment(
        vips,
        backends,
        f"127.0.0.1:{of_port}",
        f"127.0.0.1:{rest_port}",
        str(workdir / "state.json"),
    )
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    command = [sys.executable, "-m", "ryu_app", "--config", str(config), "--gateway", "gw1"]
    log = (workdir / f"controller-{vips}x{backends}.log").open("wb")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    process = subprocess.Popen(
        command + ["--log-level", "WARNING"], stdout=log, stderr=log, cwd=tree, env=env
    )
    try:
        while not ready(rest_port):
            if process.poll() is not None or time.perf_counter() - started > START_LIMIT:
                raise RuntimeError(f"controller did not get ready: see {log.name}")
        figures = {"startup_s": time.perf_counter() - started, "rss": rss_bytes(process.pid)}
        if rest_too:
            figures.update(rest_figures(rest_port))
        return figures
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def rest_figures(port: int) -> dict:
    """The lists and /metrics, each after a pause: the REST plane's CPU budget
    (``api.pacing``) makes a request wait for the CPU the one before used."""
    time.sleep(PAUSE)
    metrics, metrics_s = get(port, "/metrics")
    time.sleep(PAUSE)
    _, metrics_again_s = get(port, "/metrics")
    time.sleep(PAUSE)
    paged, page_s = get(port, "/v1/vips?limit=100")
    time.sleep(PAUSE)
    body, took = get(port, "/v1/vips")
    return {
        "vips_get_s": took,
        "vips_bytes": len(body),
        "vips_paginated": "next_cursor" in json.loads(paged),
        "vips_page_s": page_s,
        "vips_page_bytes": len(paged),
        "metrics_s": metrics_s,
        "metrics_again_s": metrics_again_s,
        "metrics_bytes": len(metrics),
        "metrics_series": setup.series_count(metrics.decode()),
    }


def worker(tree: Path, part: str, vips: int, backends: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(WORKER), part, "--vips", str(vips), "--backends", str(backends)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def measure(tree: Path, args: argparse.Namespace, workdir: Path) -> dict:
    """Every figure of one side."""
    v, b = args.vips, args.backends
    result = {}
    with lab_lock(not args.no_lock):
        full = start_controller(tree, v, b, workdir, rest_too=True)
        half_vips = start_controller(tree, v // 2, b, workdir, rest_too=False)
        half_backends = start_controller(tree, v, max(2, b // 2), workdir, rest_too=False)
    result.update(full)
    result["rss_per_vip"] = setup.per_unit((v // 2, half_vips["rss"]), (v, full["rss"]))
    result["rss_per_backend_slot"] = setup.per_unit(
        (v * max(2, b // 2), half_backends["rss"]), (v * b, full["rss"])
    )
    result["rebuild"] = worker(tree, "rebuild", v, b)
    result["statefile"] = worker(tree, "statefile", v, b)
    result["probes"] = worker(tree, "probes", args.probe_vips, b)
    return result


ROWS = (
    ("(a) start-up to every table in (s)", "startup_s", 1),
    ("(a) RSS at start-up (MB)", "rss", 1e-6),
    ("(a) RSS per VIP (kB)", "rss_per_vip", 1e-3),
    ("(a) RSS per VIP-backend (bytes)", "rss_per_backend_slot", 1),
    ("(b) shared backend down -> all tables in (s)", "rebuild.rebuild_s", 1),
    ("(b) tables rebuilt", "rebuild.installed", 1),
    ("(b) packet-path p99 during (ms)", "rebuild.p99_ms_during", 1),
    ("(b) packet-path max during (ms)", "rebuild.max_ms_during", 1),
    ("(b) packet-path p99 before (ms)", "rebuild.p99_ms_before", 1),
    ("(b) build processes", "rebuild.builder_processes", 1),
    ("(c) GET /v1/vips (s)", "vips_get_s", 1),
    ("(c) GET /v1/vips (MB)", "vips_bytes", 1e-6),
    ("(c) GET /v1/vips paginated", "vips_paginated", 1),
    ("(c) GET /v1/vips?limit=100 (s)", "vips_page_s", 1),
    ("(c) GET /v1/vips?limit=100 (MB)", "vips_page_bytes", 1e-6),
    ("(c) GET /metrics, first (s)", "metrics_s", 1),
    ("(c) GET /metrics, again (s)", "metrics_again_s", 1),
    ("(c) /metrics (kB)", "metrics_bytes", 1e-3),
    ("(c) /metrics series", "metrics_series", 1),
    ("(c) state file write, first (s)", "statefile.write_s", 1),
    ("(c) state file rewrite, same VIPs (s)", "statefile.rewrite_s", 1),
    ("(c) state file (MB)", "statefile.bytes", 1e-6),
    ("(c) probes: max in a 20 ms tick", "probes.max_per_tick", 1),
    ("(c) probes: mean per tick", "probes.mean_per_tick", 1),
)


def value(figures: dict, key: str):
    for part in key.split("."):
        if not isinstance(figures, dict):
            return None
        figures = figures.get(part)
    return figures


def cell(raw, scale: float) -> str:
    if raw is None:
        return "-"
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    number = raw * scale
    if abs(number) >= 100:
        return f"{number:,.0f}"
    return f"{number:.3g}"


def table(sides: dict[str, dict]) -> str:
    lines = ["| figure | before | after |", "| --- | ---: | ---: |"]
    for label, key, scale in ROWS:
        before, after = (cell(value(sides[s], key), scale) for s in ("before", "after"))
        lines.append(f"| {label} | {before} | {after} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE)
    parser.add_argument("--vips", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=100)
    parser.add_argument("--probe-vips", type=int, default=100, help="x backends probed (c)")
    parser.add_argument("--save", help="write both sides' figures as JSON here")
    parser.add_argument("--no-lock", action="store_true", help="start without the lab lock")
    args = parser.parse_args()
    temp = Path(tempfile.mkdtemp(prefix="lockstep-scale-"))
    trees = {"before": temp / "before", "after": ROOT}
    print(f"load average {os.getloadavg()} at the start, {os.cpu_count()} cores")
    try:
        add_worktree(trees["before"], args.before)
        sides = {}
        for side in ("before", "after"):
            print(
                f"{side}: {describe(trees[side], args.before if side == 'before' else None)}",
                flush=True,
            )
            workdir = temp / f"work-{side}"
            workdir.mkdir()
            sides[side] = measure(trees[side], args, workdir)
            print(json.dumps(sides[side]), flush=True)
    finally:
        remove_worktree(trees["before"])
        shutil.rmtree(temp, ignore_errors=True)
    print(
        f"\n{args.vips} VIPs x {args.backends} backends; load average {os.getloadavg()} at the end"
    )
    print(table(sides))
    if args.save:
        Path(args.save).write_text(json.dumps(sides, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
