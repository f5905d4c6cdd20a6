"""The REST API of one gateway: a small webob WSGI application of our own.

One route table (``ROUTES``) drives both dispatch and the OpenAPI document, so they cannot
drift apart; its query parameters and path names are checked by the deployment schema's own
converters, whole strings only (``/v1/vips%0A`` is no route).  Errors map in one place
(``_errors``): a bad body or parameter is a 400 naming the field, an unknown VIP or backend a
404, a wrong method a 405 (with ``Allow``), a name that exists a 409, a write without the bearer
token (when one is configured) a 401, a write from another origin a 403, a write whose body is
not ``application/json`` a 415, a body over ``MAX_BODY`` a 413.  None of them changes anything.

Error bodies are bounded whatever the request: at most ``SHOWN_PROBLEMS`` problems, each message
at most ``MESSAGE_LENGTH`` characters, and a count of the problems left out (validation itself
stops at ``topology.schema.MAX_PROBLEMS``).

Writes take JSON only: a browser form (``text/plain``, urlencoded, multipart) cannot be sent to
an open gateway from another site, and a cross-site ``fetch`` with a JSON body needs a CORS
preflight this API never grants.  A write whose ``Origin`` header names another site is refused
as well, in case a browser sends one anyway.

The application never touches the controller's state itself: every operation is handed to
``run``, which executes it on the controller's event loop and returns its result (in tests,
``run`` simply calls it).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webob import Request, Response
from webob import exc as http

from ryu_app.api import openapi
from ryu_app.api.service import MAX_PAGE, Accepted, BadRequest, Conflict, GatewayService, NotFound
from topology.addresses import ip_address
from topology.deployment import vip_to_data
from topology.schema import (
    MAX_PROBLEMS,
    NAME_PATTERN,
    ConfigError,
    Converter,
    Invalid,
    choice,
    described,
    integer,
    schema_of,
    shorten,
    shown,
    text,
)

LOG = logging.getLogger("lockstep.rest")
# A VIP of MAX_BACKENDS (2,000) backends with 63-character names is ~300 KB as `lockstep vip`
# sends it, 370 KB indented (tests/ryu_app/test_rest_limits.py); 1,000 short-named ones ~90 KB.
MAX_BODY = 512 * 1024
SHOWN_PROBLEMS = 20  # problems listed in an error body; the rest are counted
MESSAGE_LENGTH = 300  # characters of each message in an error body
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"

_DECIMAL = re.compile(r"-?[0-9]{1,20}")


def query_integer(low: int, high: int) -> Converter:
    """A query parameter holding an integer: plain decimal digits (no '+', '_', spaces or other
    scripts' digits, all of which ``int`` takes), then ``integer(low, high)``."""
    check = integer(low, high)

    @described(schema_of(check))
    def parse(text: str) -> int:
        if not _DECIMAL.fullmatch(text):
            raise Invalid(f"{shown(text)} is not an integer")
        return check(int(text))

    return parse


@dataclass(frozen=True)
class Param:
    """A query parameter: its converter says what it accepts (and, for the document, how)."""

    name: str
    convert: Converter
    required: bool = False


PORT_PARAM = query_integer(0, 65535)
LOOKUP_QUERY = (
    Param("src_ip", ip_address, required=True),
    Param("src_port", PORT_PARAM, required=True),
    Param("dst_ip", ip_address, required=True),
    Param("dst_port", PORT_PARAM, required=True),
    Param("proto", choice("tcp", "udp", "6", "17")),
)
FLOWS_QUERY = (
    # ``next_cursor`` of the page before: shard-position (views.cursor_text), or pin-KEY
    # into the switch's pins (pinview.PIN_CURSOR: a flow key in hex, 13 bytes for IPv4)
    Param("cursor", text(40, r"[0-9]{1,6}-[0-9]{1,12}|pin-(?:[0-9a-f]{2}){0,16}")),
    Param("limit", query_integer(1, MAX_PAGE)),
    Param("offset", query_integer(0, 2**40)),
)

# GET /v1/vips: without ``limit`` or ``cursor`` every VIP (as before); with either, a page of at
# most ``limit`` (default 100) in name order after ``cursor`` (the page before's ``next_cursor``:
# the last name it showed), so a client never holds 1,000 VIPs x 100 backends (~10 MB) at once.
VIPS_QUERY = (
    Param("cursor", text(63, NAME_PATTERN)),
    Param("limit", query_integer(1, MAX_PAGE)),
)


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/v1/vips/{vip}"; every {parameter} is a name (NAME_PATTERN)
    operation: str  # method name on RestApi
    summary: str
    body: str | None = None  # OpenAPI schema name of the request body
    query: tuple[Param, ...] = ()
    success: int = 200

    @property
    def pattern(self) -> re.Pattern:
        """Matched with ``fullmatch``: a name with a newline, or a trailing one, is no route."""
        regex = re.sub(r"\{(\w+)\}", rf"(?P<\1>{NAME_PATTERN})", self.template)
        return re.compile(regex)


ROUTES = (
    Route(
        "GET",
        "/v1/vips",
        "list_vips",
        "List the VIPs (all, or a page by name with limit and cursor)",
        query=VIPS_QUERY,
    ),
    Route("POST", "/v1/vips", "create_vip", "Create a VIP", body="Vip", success=201),
    Route("GET", "/v1/vips/{vip}", "get_vip", "One VIP"),
    Route("PUT", "/v1/vips/{vip}", "replace_vip", "Create or replace a VIP", body="Vip"),
    Route("DELETE", "/v1/vips/{vip}", "delete_vip", "Delete a VIP", success=204),
    Route("GET", "/v1/vips/{vip}/backends", "list_backends", "The backends of a VIP"),
    Route(
        "POST",
        "/v1/vips/{vip}/backends",
        "add_backend",
        "Add a backend",
        body="Backend",
        success=201,
    ),
    Route(
        "PUT",
        "/v1/vips/{vip}/backends/{backend}",
        "put_backend",
        "Create or replace a backend",
        body="Backend",
    ),
    Route(
        "PATCH",
        "/v1/vips/{vip}/backends/{backend}",
        "patch_backend",
        "Change some fields of a backend, e.g. its weight (0 drains)",
        body="BackendPatch",
    ),
    Route(
        "DELETE",
        "/v1/vips/{vip}/backends/{backend}",
        "delete_backend",
        "Remove a backend",
        success=204,
    ),
    Route("GET", "/v1/health", "health", "This gateway's view of every backend"),
    Route(
        "GET",
        "/v1/lookup",
        "lookup",
        "The backend this gateway gives a flow, from its flow table or from the hash "
        "(src_ip and dst_ip of one IP version)",
        query=LOOKUP_QUERY,
    ),
    Route(
        "GET",
        "/v1/flows",
        "flows",
        "Flow-table counts and a page of entries",
        query=FLOWS_QUERY,
    ),
    Route("GET", "/v1/status", "status", "Digests of configuration and healthy sets"),
    Route("GET", "/metrics", "metrics", "Prometheus metrics"),
    Route("GET", "/v1/openapi.json", "openapi", "This document"),
)


class RestApi:
    def __init__(
        self,
        service: GatewayService,
        run: Callable[[Callable], object] = lambda function: function(),
        token: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.service = service
        self.run = run
        self.token = token
        self.clock = clock
        self.wall_clock = wall_clock
        # Wall-clock times in answers are the core's clock plus this offset, taken once: read
        # from two clocks per request, a busy machine put milliseconds between the two reads,
        # and a backend's ``since`` seemed to change from one GET /v1/health to the next.
        self.wall_offset = wall_clock() - clock()
        # The HTTP server's connection counters (``httpserver.Stats``), served in /metrics;
        # set by ``make`` once the server exists (none under classic Ryu's eventlet server).
        self.server_stats = None

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except http.HTTPException as error:
            response = _json_error(error)
        except Exception:  # noqa: BLE001 - a bug must cost one request, not the server
            LOG.exception("REST request %s %s failed", request.method, request.path_info)
            response = _json_error(http.HTTPInternalServerError("internal error (logged)"))
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        allowed = []
        for route in ROUTES:
            match = route.pattern.fullmatch(request.path_info)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            if route.method in WRITE_METHODS:
                self._authorize(request)
                _same_origin(request)
            body = _body(request) if route.body else None
            args = match.groupdict()
            with _errors():
                request.checked_query = _query(request, route.query)
                result = getattr(self, route.operation)(request, body, **args)
            return _respond(result, route.success)
        if allowed:
            error = http.HTTPMethodNotAllowed(f"{request.method} is not allowed here")
            error.allow = sorted(set(allowed))
            raise error
        raise http.HTTPNotFound(f"no such resource: {request.path_info}")

    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            error = http.HTTPUnauthorized("writes need 'Authorization: Bearer <token>'")
            error.headers["WWW-Authenticate"] = 'Bearer realm="lockstep"'
            raise error

    # ---- operations (each runs its service call on the controller's loop) -------------------

    def list_vips(self, request, body):
        params = request.checked_query
        if not params:
            return {"vips": self.run(self.service.vips)}
        return self.run(lambda: self.service.vips_page(params))

    def get_vip(self, request, body, vip):
        return vip_to_data(self.run(lambda: self.service.vip(vip)))

    def create_vip(self, request, body):
        return self.run(lambda: self.service.create_vip(body, self.clock()))

    def replace_vip(self, request, body, vip):
        return self.run(lambda: self.service.replace_vip(vip, body, self.clock()))

    def delete_vip(self, request, body, vip):
        self.run(lambda: self.service.delete_vip(vip, self.clock()))

    def list_backends(self, request, body, vip):
        return self.get_vip(request, body, vip)["backends"]

    def add_backend(self, request, body, vip):
        return self.run(lambda: self.service.add_backend(vip, body, self.clock()))

    def put_backend(self, request, body, vip, backend):
        return self.run(
            lambda: self.service.update_backend(vip, backend, body, self.clock(), merge=False)
        )

    def patch_backend(self, request, body, vip, backend):
        return self.run(
            lambda: self.service.update_backend(vip, backend, body, self.clock(), merge=True)
        )

    def delete_backend(self, request, body, vip, backend):
        return self.run(lambda: self.service.delete_backend(vip, backend, self.clock()))

    def health(self, request, body):
        def answer():
            now = self.clock()
            return self.service.health(now, now + self.wall_offset)

        return self.run(answer)

    def lookup(self, request, body):
        params = request.checked_query
        return self.run(lambda: self.service.lookup(params, self.clock()))

    def flows(self, request, body):
        params = request.checked_query
        return self.run(lambda: self.service.flows(params, self.clock()))

    def status(self, request, body):
        return self.run(self.service.status)

    def metrics(self, request, body):
        text = self.run(lambda: self.service.metrics(self.server_stats, self.clock()))
        return Response(text, content_type="text/plain", charset="utf-8")

    def openapi(self, request, body):
        return openapi.document(ROUTES, auth=self.token is not None)


class _errors:
    """Map the service's exceptions to HTTP errors (the one place that does)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or isinstance(error, http.HTTPException):
            return False
        if isinstance(error, (ConfigError, BadRequest)):
            raise _bad_request(error) from None
        if isinstance(error, NotFound):
            raise _with_json(http.HTTPNotFound(), str(error)) from None
        if isinstance(error, Conflict):
            raise _with_json(http.HTTPConflict(), str(error)) from None
        if isinstance(error, TimeoutError):  # before OSError: it is one
            raise _with_json(http.HTTPServiceUnavailable(), str(error)) from None
        if isinstance(error, OSError):
            LOG.error("state file not written: %s", error)
            message = f"could not save the change (nothing changed): {error}"
            raise _with_json(http.HTTPInternalServerError(), message) from None
        LOG.exception("REST operation failed")
        raise _with_json(http.HTTPInternalServerError(), "internal error (logged)") from None


def _with_json(error: http.HTTPException, message: str, problems=None) -> http.HTTPException:
    error.detail = message
    error.problems = problems
    return error


def _bad_request(error: ConfigError | BadRequest) -> http.HTTPException:
    """A 400 listing the first SHOWN_PROBLEMS problems; ``more_problems`` counts the others."""
    problems = error.problems
    stopped = getattr(error, "stopped", False)
    if len(problems) == 1:
        message = str(problems[0])
    else:
        count = f"at least {MAX_PROBLEMS}" if stopped else str(len(problems))
        message = f"{count} problems; the first: {problems[0]}"
    shown_problems = [{"path": p.path, "reason": p.reason} for p in problems[:SHOWN_PROBLEMS]]
    response = _with_json(http.HTTPBadRequest(), message, shown_problems)
    response.more_problems = len(problems) - len(shown_problems)
    return response


def _json_error(error: http.HTTPException) -> Response:
    payload: dict[str, Any] = {"error": shorten(error.detail or error.title, MESSAGE_LENGTH)}
    problems = getattr(error, "problems", None)
    if problems:
        payload["problems"] = [
            {key: shorten(value, MESSAGE_LENGTH) for key, value in problem.items()}
            for problem in problems[:SHOWN_PROBLEMS]
        ]
        payload["more_problems"] = getattr(error, "more_problems", 0)
    response = Response(
        json.dumps(payload) + "\n",
        status=error.code,
        content_type="application/json",
        charset="utf-8",
    )
    for header in ("Allow", "WWW-Authenticate"):
        if header in error.headers:
            response.headers[header] = error.headers[header]
    return response


def _same_origin(request: Request) -> None:
    """A write that carries an ``Origin`` must come from this API's own origin (browsers send
    one with every cross-site write; command-line clients send none)."""
    origin = request.headers.get("Origin")
    if origin is not None and _where(origin) != _where(f"{request.scheme}://{request.host}"):
        raise _with_json(
            http.HTTPForbidden(),
            f"writes from another origin are refused (Origin {shown(origin)}, "
            f"this API is {shown(request.host)})",
        )


def _where(url: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) of an origin, the port filled in: http://h is http://h:80."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # not a port
        port = None
    return parts.scheme, parts.hostname, port


def _query(request: Request, params: tuple[Param, ...]) -> dict[str, str]:
    """The route's query parameters checked whole, each given back in its canonical spelling
    (the service parses them again, now from text it cannot misread)."""
    checked = {}
    for param in params:
        raw = request.GET.get(param.name)
        if raw is None or (raw == "" and param.required):
            if param.required:
                raise BadRequest(param.name, "required query parameter")
            continue  # absent: the service's default (an empty value is a bad one)
        try:
            checked[param.name] = str(param.convert(raw))
        except Invalid as error:
            raise BadRequest(param.name, str(error)) from None
    return checked


def _body(request: Request):
    media_type = (request.content_type or "").lower()
    if media_type != JSON:
        raise _with_json(
            http.HTTPUnsupportedMediaType(),
            f"the body must be JSON with 'Content-Type: {JSON}', got {shown(media_type or None)}",
        )
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise http.HTTPRequestEntityTooLarge(f"the body is larger than {MAX_BODY} bytes")
    raw = request.body_file.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise http.HTTPRequestEntityTooLarge(f"the body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        raise _with_json(http.HTTPBadRequest(), "a JSON body is required")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _with_json(http.HTTPBadRequest(), f"the body is not JSON: {error}") from None
    except (RecursionError, ValueError) as error:  # nesting too deep, integer too long
        raise _with_json(http.HTTPBadRequest(), f"the body is not usable JSON: {error}") from None


def _respond(result, status: int) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, Accepted):  # saved and applied, its Maglev tables not in yet
        result, status = result.body, 202
    if status == 204:
        response = Response(status=204)
        del response.content_type  # no body, so no media type
        return response
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    return Response(text, status=status, content_type="application/json", charset="utf-8")


# ---- serving ----------------------------------------------------------------------------------

GREEN_BACKLOG = 1024
GREEN_MAX_CONNECTIONS = 1024  # eventlet's green pool: connections served at once
GREEN_SOCKET_TIMEOUT = 30.0  # a client socket silent this long is closed (idle or half-sent)


class _GreenServer:
    """The same for an eventlet hub (classic Ryu): one greenthread per connection, so a request
    waiting for the controller's loop yields to it instead of blocking it.  Limits: a bounded
    pool, a socket timeout, a real backlog, an accept loop that backs off (eventlet's own ends
    at the first EMFILE).  It has no header deadline: a client trickling a byte per 30 s holds
    a greenthread (cheap) until the pool is full, and then new connections wait."""

    def __init__(self, host: str, port: int, app):
        import eventlet  # noqa: PLC0415 - only present (and only wanted) with an eventlet hub
        import eventlet.wsgi  # noqa: PLC0415

        from ryu_app.api.accept import AcceptBackoff, BackoffListener  # noqa: PLC0415

        self._wsgi = eventlet.wsgi
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = eventlet.listen((host, port), family=family, backlog=GREEN_BACKLOG)  # binds
        self.socket = BackoffListener(
            listener, AcceptBackoff("REST listener", LOG), sleep=eventlet.sleep
        )
        self.app = app

    def serve_forever(self) -> None:
        self._wsgi.server(
            self.socket,
            self.app,
            log_output=False,
            max_size=GREEN_MAX_CONNECTIONS,
            socket_timeout=GREEN_SOCKET_TIMEOUT,
        )


def make(host: str, port: int, app, green: bool = False):
    """A WSGI server for ``app``, bound at once: waitress (``httpserver``), or eventlet's server
    if ``green``.  Either way requests hand their work to the controller's loop, so they never
    run in parallel with it."""
    if green:
        return _GreenServer(host, port, app)
    from ryu_app.api import httpserver  # noqa: PLC0415 - not needed (nor installed) under classic Ryu

    server = httpserver.RestServer(app, host, port, httpserver.Limits(max_body=MAX_BODY))
    app.server_stats = server.stats
    return server
