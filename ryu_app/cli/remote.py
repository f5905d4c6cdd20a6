"""Talking to running gateways' REST APIs: ``lockstep status`` and ``lockstep vip``.

Gateways share no state, so an operator's two questions are "do they agree?" (the same VIP
configuration and the same healthy sets: then every one of them picks the same backend for
every flow) and "change this on all of them".  ``disagreements`` answers the first from the
digests of ``/v1/status``; ``Remote`` makes the calls.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from topology import deployment as deployment_file
from topology.schema import endpoint_text

TIMEOUT = 5.0


class Unreachable(OSError):
    pass


@dataclass(frozen=True)
class Remote:
    url: str  # http://host:port
    token: str | None = None
    timeout: float = TIMEOUT

    def call(self, method: str, path: str, body=None) -> tuple[int, object]:
        """(HTTP status, decoded JSON body or text); raises Unreachable if there is no answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise Unreachable(f"{self.url}: {reason}") from None
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            return status, text


def gateway_urls(config: str | None, urls: list[str]) -> list[str]:
    """``--gateway URL`` as given, or every gateway's REST endpoint from a deployment file."""
    found = list(urls)
    if config:
        for gateway in deployment_file.load(config).gateways:
            host, port = gateway.rest
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            found.append(f"http://{endpoint_text(host, port)}")
    return [u if "://" in u else f"http://{u}" for u in found]


def disagreements(statuses: dict[str, dict]) -> list[str]:
    """What differs between gateways' ``/v1/status`` answers (empty: they agree)."""
    problems = []
    if len({s["config_digest"] for s in statuses.values()}) > 1:
        problems.append("VIP configuration differs")
    names = sorted({vip for s in statuses.values() for vip in s["vips"]})
    for vip in names:
        present = {g for g, s in statuses.items() if vip in s["vips"]}
        if present != set(statuses):
            problems.append(f"VIP {vip}: missing on {', '.join(sorted(set(statuses) - present))}")
            continue
        views = {g: s["vips"][vip] for g, s in statuses.items()}
        if len({v["config_digest"] for v in views.values()}) > 1:
            problems.append(f"VIP {vip}: configuration differs")
        if len({v["healthy_digest"] for v in views.values()}) > 1:
            sets = "; ".join(f"{g}: {' '.join(v['healthy']) or '-'}" for g, v in views.items())
            problems.append(f"VIP {vip}: healthy sets differ ({sets})")
    for gateway, status in statuses.items():
        if not status.get("switch_connected"):
            problems.append(f"{gateway}: switch not connected")
    return problems


# A switch-mode VIP whose fullest slot has this many times the mean's SYNs (the gateway says
# once it has seen enough of them) breaks ``port-bits``'s deployment constraint: clients'
# source ports do not vary in bits 1..k (a NAT handing out ports in steps of 2**(k+1)?).
SKEW_WARN = 4.0


def skewed_slots(statuses: dict[str, dict]) -> list[str]:
    """Switch-mode VIPs whose slots the clients' source ports fill badly unevenly."""
    warnings = []
    for gateway, status in statuses.items():
        for vip, view in sorted(status["vips"].items()):
            share = (view.get("slots") or {}).get("max_mean_syn_share")
            if share is not None and share >= SKEW_WARN:
                warnings.append(
                    f"VIP {vip} on {gateway}: slots: max/mean SYN share {share:.1f}x (clients'"
                    " source ports do not vary in bits 1..k: a NAT? see docs/switch-mode.md)"
                )
    return warnings


def status_table(statuses: dict[str, dict]) -> str:
    """Gateways side by side, one column each."""
    columns = list(statuses)
    rows = [("", *[statuses[c]["gateway"] for c in columns])]
    rows.append(("endpoint", *columns))
    rows.append(
        ("switch", *["connected" if statuses[c]["switch_connected"] else "-" for c in columns])
    )
    rows.append(("config", *[statuses[c]["config_digest"] for c in columns]))
    for vip in sorted({v for s in statuses.values() for v in s["vips"]}):
        views = [statuses[c]["vips"].get(vip) for c in columns]
        rows.append((f"{vip} config", *[v["config_digest"] if v else "(none)" for v in views]))
        rows.append(
            (f"{vip} healthy", *[" ".join(v["healthy"]) or "-" if v else "(none)" for v in views])
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
