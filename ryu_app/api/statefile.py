"""The state file: the VIPs as changed through the REST API, so they survive a restart.

Written atomically (write a temporary file in the same folder, fsync it, rename it over the old
one, fsync the folder): after a crash the file is the old version or the new one, never half.
Read at start-up by the launcher; a file that does not parse stops the start with the same
key-naming errors as a bad deployment file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from topology import deployment as deployment_file
from topology.schema import ConfigError, Problem

FORMAT_VERSION = 1


def default_path(gateway_name: str) -> Path:
    return Path("/var/lib/lockstep") / f"{gateway_name}.json"


# Each VIP's JSON as last written, by the Vip object (immutable: a change makes a new one), so
# that a change rewrites one VIP's text and joins the others': at 1,000 VIPs x 100 backends the
# whole file took ~0.9 s of the REST thread (0.5 s of ``vip_to_data``, 0.4 s of an indented
# dump, which only the pure-Python encoder does), a rewrite now ~0.1 s (bench_scale).
_fragments: dict[int, tuple[object, str]] = {}


def vip_text(vip) -> str:
    """One VIP as one line of JSON (keys sorted), from the cache when this Vip was written."""
    cached = _fragments.get(id(vip))
    if cached is not None and cached[0] is vip:
        return cached[1]
    text = json.dumps(deployment_file.vip_to_data(vip), sort_keys=True)
    _fragments[id(vip)] = (vip, text)
    return text


def file_text(vips) -> str:
    """The file: a version and the VIPs, one per line (readable, and a diff shows which
    changed).  The cache keeps only the VIPs written now."""
    lines = [vip_text(vip) for vip in vips]
    alive = {id(vip) for vip in vips}
    for key in [key for key in _fragments if key not in alive]:
        del _fragments[key]
    body = ",\n".join(lines)
    return f'{{"version": {FORMAT_VERSION}, "vips": [\n{body}\n]}}'


def write(path: str | Path, vips) -> None:
    """Save ``vips`` (Vip objects); raises OSError if the file cannot be written."""
    path = Path(path)
    vips = list(vips)
    text = file_text(vips)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(_temporary_name(path, os.getpid()))
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    # The new file is in place: from here on the change has happened.  Syncing the folder
    # makes the rename durable; a folder that cannot be synced must not turn the change into a
    # reported failure (the caller would say "nothing changed" while the file says otherwise).
    try:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass


def _temporary_name(path: Path, pid: int) -> str:
    return f".{path.name}.{pid}.tmp"


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporaries a killed save of ``path`` left behind (``.NAME.PID.tmp`` beside
    it, nothing else), and say which.  Called once at start-up, before this process saves:
    no save of this state file can be under way then (one controller per gateway)."""
    path = Path(path)
    own = re.compile(re.escape(f".{path.name}.") + "[0-9]+" + re.escape(".tmp"))
    removed = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:  # no folder yet: nothing left behind
        return []
    for candidate in candidates:
        if own.fullmatch(candidate.name) and candidate.is_file() and not candidate.is_symlink():
            try:
                candidate.unlink()
            except OSError:
                continue
            removed.append(candidate)
    return removed


def read(path: str | Path) -> list | None:
    """The VIPs saved in ``path``, or None if there is no such file; ConfigError if it is bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([Problem("", f"cannot read state file {path}: {error}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError([Problem("", f"state file {path} is not JSON: {error}")]) from None
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ConfigError(
            [Problem("version", f"state file {path}: expected version {FORMAT_VERSION}")]
        )
    raw_vips = data.get("vips")
    if not isinstance(raw_vips, list):
        raise ConfigError([Problem("vips", f"state file {path}: must be a list")])
    vips, problems = [], []
    for index, raw in enumerate(raw_vips):
        try:
            vips.append(deployment_file.parse_vip(raw, f"vips[{index}]"))
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return vips
