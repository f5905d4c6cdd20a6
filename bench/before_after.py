"""Before and after: bench_mapping and bench_newflow of two revisions, side by side, in one run.

Run:  .venv/bin/python bench/before_after.py [--before 21edb5e] [--rounds 3] [--quick]

"Before" is a throw-away ``git worktree`` of a revision (default 21edb5e, where the redesign of
issue 12 started) in a temporary directory, removed at the end, also after an error or Ctrl-C.
"After" is this working tree, uncommitted changes included, or ``--after REV`` (a second
worktree: a revision against itself shows how noisy the machine is).  Each tree runs its own
bench scripts and its own code (``PYTHONPATH=<tree>``) under this interpreter.  The two take turns,
before/after, then after/before, and so on, so that whatever else the machine does hits both.

Both revisions' scripts end their output with one JSON object of every figure; the table gives,
per figure, the median of the rounds on each side, after/before, the rounds' spread (the larger
side's (max - min) / median) and a verdict: a change no larger than the spread is noise.

bench_newflow starts controllers on ports: it runs under /tmp/lockstep-ovs.lock (the lock
``flock`` takes), held for one round's pair of runs (about a minute and a half by default), so
that the two sides run back to back and others wait that long, not the whole comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BEFORE = "21edb5e"
LOCK_FILE = "/tmp/lockstep-ovs.lock"
SCRIPTS = {"mapping": "bench/bench_mapping.py", "newflow": "bench/bench_newflow.py"}
# Options each script gets by default: a few minutes in all.  bench_newflow's --quick means one
# hub and no rebuild phase; its REST-load phases are skipped where the script has them.
DEFAULT_ARGS = {"mapping": ["--quick"], "newflow": ["--quick", "--duration", "5"]}
QUICK_ARGS = {"mapping": ["--quick"], "newflow": ["--quick"]}
SKIP_WHERE_KNOWN = {"mapping": [], "newflow": ["--no-rest-load"]}
CHILD_GRACE_SECONDS = 30.0  # an interrupted bench script stops its controllers in this time
NOISE_FLOOR = 0.02  # changes this small are never called better or worse


class Figure(NamedTuple):
    bench: str  # "mapping" or "newflow"
    key: str  # where in the script's JSON: "build_ms.100" is summary["build_ms"]["100"]
    label: str
    higher_is_better: bool | None  # None: context or a control, no verdict


FIGURES = (
    Figure("mapping", "build_ms.10", "Maglev build, 10 backends (ms)", False),
    Figure("mapping", "build_ms.100", "Maglev build, 100 backends (ms)", False),
    Figure("mapping", "build_ms.1000", "Maglev build, 1000 backends (ms)", False),
    Figure("mapping", "lookups_per_s", "lookups from a packed key (/s)", True),
    Figure("mapping", "bytes_per_entry", "flow table (bytes/entry)", False),
    Figure("mapping", "cli_seconds", "lockstep lookup, 100k CSV rows (s)", False),
    Figure("newflow", "lockstep_flows_per_s", "Lockstep new flows/s (closed loop)", True),
    Figure("newflow", "lockstep_latency_rate_per_s", "Lockstep open-loop rate for p50/p99", None),
    Figure("newflow", "lockstep_p50_ms", "Lockstep first-packet p50 (ms)", False),
    Figure("newflow", "lockstep_p99_ms", "Lockstep first-packet p99 (ms)", False),
    Figure("newflow", "lockstep_controller_us_per_flow", "Lockstep CPU per new flow (us)", False),
    # The same code on both sides: how much the machine alone moved the figures.
    Figure("newflow", "reference_flows_per_s", "control: bare os-ken app new flows/s", None),
    Figure("newflow", "null_flows_per_s", "control: null controller new flows/s", None),
    Figure("newflow", "lockstep_other_cpu", "other processes meanwhile (cores)", None),
)


class Row(NamedTuple):
    figure: Figure
    before: float | None  # median of the rounds
    after: float | None
    spread: float | None  # the larger side's (max - min) / median
    rounds: tuple[int, int]  # rounds that gave the figure, before and after


# ---- pure parts: parse, summarise, format ------------------------------------------------------


def last_json(output: str) -> dict | None:
    """The last line of a script's output that is a JSON object: its figures."""
    for line in reversed(output.splitlines()):
        text = line.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def figure_value(summary: dict, key: str) -> float | None:
    """One number from a script's JSON by a dotted path; None where it is missing or not a number
    (a revision that does not report it, a failed controller)."""
    value: object = summary
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def round_order(round_index: int) -> tuple[str, str]:
    """Before first in even rounds, after first in odd ones: a drift in the machine's load
    (another agent starting, a warming cache) then favours neither side."""
    return ("before", "after") if round_index % 2 == 0 else ("after", "before")


def spread(values: list[float]) -> float | None:
    """(max - min) / median; None below two values (one round says nothing of the noise)."""
    median = statistics.median(values) if len(values) > 1 else 0
    return (max(values) - min(values)) / abs(median) if median else None


def summarise(summaries: dict[str, dict[str, list[dict]]]) -> list[Row]:
    """One row per figure from every run's JSON: ``summaries[side][bench]`` lists one JSON
    object per round that gave one."""
    rows = []
    for figure in FIGURES:
        sides = []
        for side in ("before", "after"):
            runs = summaries.get(side, {}).get(figure.bench, [])
            values = [v for v in (figure_value(s, figure.key) for s in runs) if v is not None]
            sides.append(values)
        spreads = [s for s in (spread(values) for values in sides) if s is not None]
        rows.append(
            Row(
                figure,
                statistics.median(sides[0]) if sides[0] else None,
                statistics.median(sides[1]) if sides[1] else None,
                max(spreads) if spreads else None,
                (len(sides[0]), len(sides[1])),
            )
        )
    return rows


def verdict(row: Row) -> str:
    """After against before: "better" or "WORSE" when it moved by more than the rounds spread
    (and NOISE_FLOOR), "within noise" if not, "?" with nothing to compare with (one round)."""
    if row.figure.higher_is_better is None or not row.before or row.after is None:
        return ""
    if row.spread is None:
        return "?"
    change = row.after / row.before - 1
    if abs(change) <= max(row.spread or 0, NOISE_FLOOR):
        return "within noise"
    return "better" if (change > 0) == row.figure.higher_is_better else "WORSE"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def format_table(rows: list[Row]) -> str:
    """The side-by-side table, in Markdown (the README's tables are)."""
    lines = [
        "| figure | before | after | after/before | spread | verdict |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        ratio = f"{row.after / row.before:.2f}x" if row.before and row.after is not None else "-"
        spread_text = "-" if row.spread is None else f"{row.spread:.0%}"
        counts = (
            "" if row.rounds[0] == row.rounds[1] else f" (rounds {row.rounds[0]}/{row.rounds[1]})"
        )
        lines.append(
            f"| {row.figure.label}{counts} | {number(row.before)} | {number(row.after)} | "
            f"{ratio} | {spread_text} | {verdict(row)} |"
        )
    return "\n".join(lines)


def known_options(help_text: str) -> set[str]:
    return set(re.findall(r"--[a-z][a-z0-9-]*", help_text))


def entry_module(script_text: str) -> str | None:
    """The module a ``__main__.py`` or a console script imports its ``main`` from."""
    match = re.search(r"^from ([\w.]+) import main\b", script_text, re.MULTILINE)
    return match.group(1) if match else None


# ---- the runs -----------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def add_worktree(path: Path, revision: str) -> None:
    try:
        git("worktree", "add", "--detach", str(path), revision)
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"git worktree add {revision}: {error.stderr.strip()}") from None


def describe(tree: Path, revision: str | None) -> str:
    if revision:
        return f"{revision} = {git('log', '-1', '--format=%h %s', revision)}"
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"working tree {tree} at {git('log', '-1', '--format=%h %s')}{dirty}"


def tree_env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def make_interpreter(where: Path) -> Path:
    """This interpreter and its packages, minus the console scripts and the editable install.

    bench_newflow starts the venv's ``lockstep-gateway`` when it sits beside the interpreter,
    else ``python -m ryu_app``.  The console script names the module of the layout it was
    installed from (``ryu_app.shell.launcher`` since the rooms-by-role move), and the editable
    install's finder fills in whatever a tree lacks from the main checkout: a tree would run
    partly someone else's code.  From this small venv, whose site-packages only points at this
    one's, each tree runs its own ``ryu_app/__main__.py`` and nothing but its own modules."""
    venv.EnvBuilder(symlinks=True, with_pip=False).create(where)
    packages = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    own = Path(sysconfig.get_path("purelib", vars={"base": str(where), "platbase": str(where)}))
    (own / "lockstep-venv-packages.pth").write_text("\n".join(packages) + "\n")
    return where / "bin" / "python"


def check_tree(python: Path, tree: Path) -> None:
    """The module the tree's ``python -m ryu_app`` starts comes from the tree itself."""
    main_file = tree / "ryu_app" / "__main__.py"
    if not main_file.exists():
        raise SystemExit(f"{tree}: no ryu_app/__main__.py, so no `python -m ryu_app` to start")
    module = entry_module(main_file.read_text()) or "ryu_app"
    code = f"import importlib.util as u; print(u.find_spec({module!r}).origin)"
    found = subprocess.run(
        [str(python), "-c", code],
        check=False,
        cwd=tree,  # "-c" puts the current directory first on the path
        env=tree_env(tree),
        capture_output=True,
        text=True,
    )
    origin = found.stdout.strip()
    if found.returncode or not Path(origin).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(
            f"{tree}: the controller's module {module} comes from "
            f"{origin or found.stderr.strip()!r}, not from this tree"
        )


def script_args(
    python: Path, tree: Path, bench: str, base: list[str], extra: list[str]
) -> list[str]:
    """``base`` plus the options this tree's script knows from SKIP_WHERE_KNOWN, plus ``extra``."""
    wanted = SKIP_WHERE_KNOWN[bench]
    if wanted:
        shown = subprocess.run(
            [str(python), str(tree / SCRIPTS[bench]), "--help"],
            check=False,
            env=tree_env(tree),
            capture_output=True,
            text=True,
        )
        wanted = [option for option in wanted if option in known_options(shown.stdout)]
    return [*base, *wanted, *extra]


def stop_child(process: subprocess.Popen) -> None:
    """An interrupted bench script gets one SIGINT (it stops its controllers in its ``finally``);
    if it has not exited in CHILD_GRACE_SECONDS, its process group (its controllers too) is
    killed.  The group is signalled only while its leader lives: then its id is surely ours."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(CHILD_GRACE_SECONDS)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_script(python: Path, tree: Path, bench: str, args: list[str], log: Path) -> tuple[int, str]:
    """One run of one tree's bench script, output to ``log``; (exit status, output).  In a
    process group of its own, so that Ctrl-C reaches it only through ``stop_child``."""
    command = [str(python), str(tree / SCRIPTS[bench]), *args]
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tree,
            env=tree_env(tree),
            start_new_session=True,
        )
        try:
            status = process.wait()
        finally:
            stop_child(process)
    return status, log.read_text()


@contextlib.contextmanager
def locked(bench: str):
    """bench_newflow holds the lab lock for one run; bench_mapping starts nothing, needs none."""
    if bench != "newflow":
        yield
        return
    with open(LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"      waiting for {LOCK_FILE} ...", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def headline(bench: str, summary: dict) -> str:
    if bench == "mapping":
        return f"build 100: {number(figure_value(summary, 'build_ms.100'))} ms"
    rate = number(figure_value(summary, "lockstep_flows_per_s"))
    return f"Lockstep {rate} flows/s, p99 {number(figure_value(summary, 'lockstep_p99_ms'))} ms"


def run_once(python: Path, tree: Path, bench: str, options: list[str], log: Path) -> dict | None:
    """One run: its figures, or None; a line of progress, the output's tail if it failed."""
    started = time.monotonic()
    status, output = run_script(python, tree, bench, options, log)
    summary = last_json(output)
    took = f"{bench:7s} {time.monotonic() - started:3.0f} s"
    if summary is None or status:
        tail = "\n".join(output.splitlines()[-15:])
        print(f"{took}: FAILED (exit {status}):\n{tail}", flush=True)
    if summary is not None:
        print(f"{took}: {headline(bench, summary)}", flush=True)
    return summary


def run_rounds(python: Path, trees: dict[str, Path], args: argparse.Namespace, logs: Path) -> dict:
    """Every run, the two sides in turn; ``summaries[side][bench]`` as ``summarise`` takes it.
    One round's two bench_newflow runs share one hold of the lock, so that they are measured
    back to back (another agent's lab between them would load one side only)."""
    summaries: dict = {side: {bench: [] for bench in args.benches} for side in trees}
    options = {
        (side, bench): script_args(python, tree, bench, args.base[bench], args.extra[bench])
        for side, tree in trees.items()
        for bench in args.benches
    }
    for (side, bench), chosen in options.items():
        print(f"  {side:6s} {SCRIPTS[bench]} {shlex.join(chosen)}")
    for index in range(args.rounds):
        for bench in args.benches:
            with locked(bench):
                for side in round_order(index):
                    print(f"    round {index + 1}/{args.rounds} {side:6s} ", end="", flush=True)
                    log = logs / f"{bench}-{side}-{index + 1}.log"
                    summary = run_once(python, trees[side], bench, options[side, bench], log)
                    if summary is not None:
                        summaries[side][bench].append(summary)
    return summaries


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="revision (default %(default)s)")
    parser.add_argument("--after", help="revision (default: this working tree, as it is)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--quick", action="store_true", help="bench_newflow's 2 s phases")
    parser.add_argument("--only", choices=tuple(SCRIPTS), help="one benchmark only")
    parser.add_argument("--mapping-args", default="", help="more options for bench_mapping")
    parser.add_argument("--newflow-args", default="", help="more options for bench_newflow")
    parser.add_argument("--save", help="write every run's figures and the medians as JSON here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds >= 1, please")
    args.benches = [args.only] if args.only else list(SCRIPTS)
    args.base = QUICK_ARGS if args.quick else DEFAULT_ARGS
    args.extra = {
        "mapping": shlex.split(args.mapping_args),
        "newflow": shlex.split(args.newflow_args),
    }
    return args


def save(path: str, described: dict, summaries: dict, rows: list[Row]) -> None:
    medians = {
        f"{row.figure.bench}.{row.figure.key}": {"before": row.before, "after": row.after}
        for row in rows
    }
    data = {"sides": described, "runs": summaries, "medians": medians}
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True))


def remove_worktree(path: Path) -> None:
    """Also after a half-made ``git worktree add``; never raises, so the error that brought us
    here is the one reported."""
    if path.exists():
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(path))
    with contextlib.suppress(subprocess.CalledProcessError):
        git("worktree", "prune")


def main() -> int:
    args = parse_args()
    # Both end in ``finally``: the worktrees are removed, the bench script running is stopped.
    # SIGINT too, even when started from a script with it ignored (as ``&`` does): an ignored
    # SIGINT would also be ignored by the bench scripts, which then could not stop their
    # controllers (a handler, unlike "ignore", is not inherited through exec).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    temp = Path(tempfile.mkdtemp(prefix="lockstep-before-after-"))
    trees = {"before": temp / "before", "after": temp / "after" if args.after else ROOT}
    revisions = {"before": args.before, "after": args.after}
    started = time.monotonic()
    try:
        python = make_interpreter(temp / "python")
        described = {}
        for side, revision in revisions.items():
            if revision:
                add_worktree(trees[side], revision)
            described[side] = describe(trees[side], revision)
            print(f"{side}: {described[side]}")
            check_tree(python, trees[side])
        print(f"{args.rounds} round(s), load average {os.getloadavg()[0]:.2f} at the start")
        summaries = run_rounds(python, trees, args, temp)
    finally:
        for side, revision in revisions.items():
            if revision:
                remove_worktree(trees[side])
        shutil.rmtree(temp, ignore_errors=True)
    rows = [row for row in summarise(summaries) if row.figure.bench in args.benches]
    print(
        f"\nmedians of {args.rounds} round(s), {time.monotonic() - started:.0f} s, load average "
        f"{os.getloadavg()[0]:.2f} at the end\n{format_table(rows)}"
    )
    if args.save:
        save(args.save, described, summaries, rows)
    runs = [len(runs) for side in summaries.values() for runs in side.values()]
    return 0 if all(count == args.rounds for count in runs) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted (worktrees removed, bench scripts stopped)", file=sys.stderr)
        sys.exit(130)
