"""The state file: the VIPs as changed through the REST API, so they survive a restart, and
the backends' ids (``balancer.SavedIds``), so that a restarted controller names the per-flow
rules its switch kept as the run that wrote them did.

Version 2: ``vips`` (absent when no REST change was made: the deployment file's VIPs hold),
``backend_ids`` (VIP -> backend -> its id, tunnel address and MAC) and ``next_backend_id``,
and ``second_chance_history`` (VIP -> the tables second chance remembers, newest first: when
each was replaced, wall clock, null for the one in use when written, and what it was built
from; absent when no VIP has any).  Version 1 files (VIPs only) are still read: they restore no
ids.

Written atomically (write a temporary file in the same folder, fsync it, rename it over the old
one, fsync the folder): after a crash the file is the old version or the new one, never half.
Read at start-up by the launcher; a file that does not parse stops the start with the same
key-naming errors as a bad deployment file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ryu_app.core.balancer import SavedId, SavedIds
from ryu_app.core.flowtable import MAX_BACKEND_ID
from ryu_app.core.maglev import TableSpec
from ryu_app.core.model import HASH_MODES, MAX_TABLE_SIZE, MAX_WEIGHT, PLACEMENTS
from ryu_app.core.secondchance import KeptTable
from topology import deployment as deployment_file
from topology.schema import ConfigError, Problem

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class SavedState:
    vips: list | None  # None: no REST change saved (the deployment file's VIPs hold)
    ids: SavedIds | None  # None: a version 1 file, or one written before any id was saved


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


# Each VIP's backend ids as last written, by VIP name: (a copy of its ids, their JSON).  The
# worker makes a new ``SavedIds`` for every save, so the cache compares contents, not objects:
# at 1,000 VIPs x 100 backends a save whose ids changed in a few VIPs takes ~20 ms of the worker
# (comparing), where rendering every VIP's took ~125-150 ms, the GIL held (slowing the loop).
_id_fragments: dict[str, tuple[dict, str]] = {}


def vip_ids_text(vip_name: str, backends: dict) -> str:
    """One VIP's backend ids (backend name -> ``SavedId``) as JSON (keys sorted), from the
    cache when they are the ones written last for this VIP."""
    cached = _id_fragments.get(vip_name)
    if cached is not None and cached[0] == backends:
        return cached[1]
    data = {name: saved._asdict() for name, saved in backends.items()}
    text = json.dumps(data, sort_keys=True)
    _id_fragments[vip_name] = (dict(backends), text)  # (a copy: the caller's may change)
    return text


def ids_text(ids: SavedIds) -> str:
    """Every VIP's backend ids as one JSON object, VIP names sorted: the same text as
    ``json.dumps`` of the whole (sort_keys, default separators) gives, joined from each VIP's
    cached text.  The cache keeps only the VIPs written now."""
    names = sorted(ids.backends)
    for name in [name for name in _id_fragments if name not in ids.backends]:
        del _id_fragments[name]
    body = ", ".join(
        f"{json.dumps(name)}: {vip_ids_text(name, ids.backends[name])}" for name in names
    )
    return "{" + body + "}"


def file_text(vips, ids: SavedIds | None = None) -> str:
    """The file: its version, the VIPs one per line (readable, and a diff shows which
    changed; absent when ``vips`` is None), then the backend ids.  The cache keeps only the
    VIPs written now."""
    text = f'{{"version": {FORMAT_VERSION}'
    alive: set[int] = set()
    if vips is not None:
        vips = list(vips)
        alive = {id(vip) for vip in vips}
        body = ",\n".join(vip_text(vip) for vip in vips)
        text += f', "vips": [\n{body}\n]' if vips else ', "vips": []'
    for key in [key for key in _fragments if key not in alive]:
        del _fragments[key]
    if ids is not None:
        text += f',\n"backend_ids": {ids_text(ids)}'
        text += f',\n"next_backend_id": {ids.next_id}'
        if ids.history:
            text += f',\n"second_chance_history": {history_text(ids.history)}'
    return text + "}"


def history_text(history: dict[str, tuple[KeptTable, ...]]) -> str:
    """Second chance's history, one VIP per line (VIP names sorted)."""
    lines = []
    for name in sorted(history):
        entries = [
            {
                "replaced_at": kept.at,
                "table_size": kept.spec.table_size,
                "placement": kept.spec.placement,
                "hash": kept.slotting[1],
                "backends": [list(backend) for backend in kept.spec.backends],
            }
            for kept in history[name]
        ]
        lines.append(f"{json.dumps(name)}: {json.dumps(entries, sort_keys=True)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def write(path: str | Path, vips, ids: SavedIds | None = None) -> bool:
    """Save ``vips`` (Vip objects; None: none changed through REST) and ``ids``: True, or
    False if the file held exactly that already (then nothing is written: every start saves
    its ids, mostly the ones it read); raises OSError if the file cannot be written."""
    path = Path(path)
    content = (file_text(vips, ids) + "\n").encode("utf-8")
    if _holds(path, content):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(_temporary_name(path, os.getpid()))
    try:
        with open(temporary, "wb") as handle:
            handle.write(content)
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
    return True


def _holds(path: Path, content: bytes) -> bool:
    """Whether ``path`` holds exactly ``content`` (a whole file: each write renames one into
    place).  A size that differs answers without reading; the same size costs one read (~8 MB
    at 1,000 VIPs x 100 backends: a few ms, where the write's fsync costs much more)."""
    try:
        return path.stat().st_size == len(content) and path.read_bytes() == content
    except OSError:  # no file, or one this process cannot read: write it
        return False


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
    """The VIPs saved in ``path``, or None if there is no such file or it holds no REST
    change; ConfigError if it is bad."""
    state = read_state(path)
    return None if state is None else state.vips


def read_state(path: str | Path) -> SavedState | None:
    """What ``path`` holds, or None if there is no such file; ConfigError if it is bad."""
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
    if not isinstance(data, dict) or data.get("version") not in READABLE_VERSIONS:
        expected = " or ".join(map(str, READABLE_VERSIONS))
        raise ConfigError([Problem("version", f"state file {path}: expected version {expected}")])
    has_vips = data["version"] == 1 or "vips" in data  # (version 2 without: none saved)
    vips = _vips(data.get("vips"), path) if has_vips else None
    ids = _ids(data, path) if "backend_ids" in data else None
    if ids is not None and "second_chance_history" in data:
        history = _history(data["second_chance_history"], path)
        ids = SavedIds(ids.backends, ids.next_id, history)
    return SavedState(vips, ids)


def _history(raw, path: Path) -> dict[str, tuple[KeptTable, ...]]:
    """Second chance's saved history; ConfigError naming the key of an entry that is not
    what ``history_text`` writes."""
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise ConfigError([Problem("second_chance_history", f"state file {path}: must map "
                                   "VIP names to lists of tables")])  # fmt: skip
    history = {}
    for vip, entries in raw.items():
        kept = []
        for index, entry in enumerate(entries):
            table = _kept_table(entry)
            if table is None:
                key = f"second_chance_history.{vip}[{index}]"
                reason = (
                    "must be {replaced_at: number or null, table_size, placement, hash, "
                    "backends: [[name, weight], ...]}"
                )
                raise ConfigError([Problem(key, f"state file {path}: {reason}")])
            kept.append(table)
        history[vip] = tuple(kept)
    return history


def _kept_table(entry) -> KeptTable | None:
    """One saved history entry, or None if it is not well formed."""
    if not isinstance(entry, dict):
        return None
    at, size, backends = entry.get("replaced_at"), entry.get("table_size"), entry.get("backends")
    placement, hash_mode = entry.get("placement"), entry.get("hash")
    if at is not None and not isinstance(at, int | float) or isinstance(at, bool):
        return None
    if type(size) is not int or not 1 <= size <= MAX_TABLE_SIZE:
        return None
    if placement not in PLACEMENTS or hash_mode not in HASH_MODES:
        return None
    if not isinstance(backends, list) or not all(_is_backend(b) for b in backends):
        return None
    spec = TableSpec(size, tuple((name, weight) for name, weight in backends), placement)
    return KeptTable(at, spec, (placement, hash_mode, size))


def _is_backend(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and type(value[1]) is int
        and 1 <= value[1] <= MAX_WEIGHT
    )


def _vips(raw_vips, path: Path) -> list:
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


def _ids(data: dict, path: Path) -> SavedIds:
    """The saved ids; ConfigError naming the key if one is not an id in range, is given
    twice, or lacks its tunnel address or MAC (a controller that restored such ids would
    attribute the switch's rules wrongly)."""
    raw, next_id = data["backend_ids"], data.get("next_backend_id")

    def bad(key: str, reason: str) -> ConfigError:
        return ConfigError([Problem(key, f"state file {path}: {reason}")])

    if not _is_id(next_id):
        raise bad("next_backend_id", f"must be an integer 1..{MAX_BACKEND_ID}")
    if not isinstance(raw, dict) or not all(isinstance(b, dict) for b in raw.values()):
        raise bad("backend_ids", "must map VIP names to {backend name: id}")
    backends, seen = {}, set()
    for vip, entries in raw.items():
        backends[vip] = {}
        for name, entry in entries.items():
            key = f"backend_ids.{vip}.{name}"
            try:
                saved = SavedId(entry["id"], str(entry["tunnel_ip"]), str(entry["mac"]))
            except (TypeError, KeyError):
                raise bad(key, "must be {id, tunnel_ip, mac}") from None
            if not _is_id(saved.id) or saved.id in seen:
                raise bad(key, f"id must be 1..{MAX_BACKEND_ID} and given once")
            seen.add(saved.id)
            backends[vip][name] = saved
    return SavedIds(backends, next_id)


def _is_id(value) -> bool:
    return type(value) is int and 1 <= value <= MAX_BACKEND_ID
