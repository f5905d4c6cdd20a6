"""Which gateway builds ``bench/bench_flood.py`` runs, and the lock each lab holds.

A build is a source tree whose ``ryu_app`` the controller runs (``PYTHONPATH``): this tree, or
a git revision checked out into a throw-away ``git worktree`` (``--before REV``), removed at the
end.  Each lab takes ``/tmp/lockstep-ovs.lock`` (``flock``, as the shell's ``flock`` command
does) for its lifetime only, so that other users of the machine's namespaces and Open vSwitch
can run between two labs; when the bench itself runs under ``flock`` on that file, the lock is
already ours and is not taken again (it would wait for itself).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = Path("/tmp/lockstep-ovs.lock")


def git(*args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def describe(tree: Path) -> str:
    """A tree's commit, short, and whether it has changes not committed."""
    commit = git("rev-parse", "--short", "HEAD", cwd=tree)
    dirty = git("status", "--porcelain", "--untracked-files=no", cwd=tree)
    return commit + (" + uncommitted changes" if dirty else "")


@contextlib.contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """``revision`` checked out (detached) in a temporary worktree, removed afterwards."""
    git("rev-parse", "--verify", f"{revision}^{{commit}}")  # a clear error for a bad REV
    path = Path(tempfile.mkdtemp(prefix="lockstep-flood-before-"))
    path.rmdir()  # git wants to create it
    git("worktree", "add", "--detach", "--quiet", str(path), revision)
    try:
        if not (path / "ryu_app" / "__main__.py").exists():
            raise RuntimeError(f"{revision} has no ryu_app/__main__.py to run")
        yield path
    finally:
        with contextlib.suppress(RuntimeError):
            git("worktree", "remove", "--force", str(path))
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(RuntimeError):
            git("worktree", "prune")


def ancestors(pid: int) -> Iterator[list[str]]:
    """The command lines of a process's ancestors, parent first."""
    while pid > 1:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            pid = int(next(line for line in status.splitlines() if line.startswith("PPid:"))[5:])
            if pid <= 1:
                return
            yield Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, StopIteration, ValueError):
            return


def held_by_ancestor(lock: Path, pid: int | None = None) -> bool:
    """Whether a ``flock`` command above us holds ``lock`` (we run under it)."""
    for argv in ancestors(pid or os.getpid()):
        if argv and Path(argv[0]).name == "flock" and str(lock) in argv:
            return True
    return False


@contextlib.contextmanager
def ovs_lock(lock: Path = LOCK) -> Iterator[None]:
    """Hold the machine's lab lock for the block (waits for whoever has it)."""
    if held_by_ancestor(lock):
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
