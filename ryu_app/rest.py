"""The REST API of one gateway: a small webob WSGI application of our own.

One route table (``ROUTES``) drives both dispatch and the OpenAPI document, so they cannot
drift apart.  Errors map in one place (``_errors``): a bad body or parameter is a 400 naming
the field, an unknown VIP or backend a 404, a wrong method a 405 (with ``Allow``), a name that
exists a 409, a write without the bearer token (when one is configured) a 401.

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
import socketserver
import time
from collections.abc import Callable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from webob import Request, Response
from webob import exc as http

from ryu_app import openapi
from ryu_app.service import Accepted, BadRequest, Conflict, GatewayService, NotFound
from topology.deployment import vip_to_data
from topology.schema import ConfigError

LOG = logging.getLogger("lockstep.rest")
MAX_BODY = 1 << 20
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/v1/vips/{vip}"
    operation: str  # method name on RestApi
    summary: str
    body: str | None = None  # OpenAPI schema name of the request body
    query: tuple[str, ...] = ()
    success: int = 200

    @property
    def pattern(self) -> re.Pattern:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        return re.compile(f"^{regex}$")


ROUTES = (
    Route("GET", "/v1/vips", "list_vips", "List the VIPs"),
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
        "The backend this gateway gives a flow, from its flow table or from the hash",
        query=("src_ip", "src_port", "dst_ip", "dst_port", "proto"),
    ),
    Route(
        "GET",
        "/v1/flows",
        "flows",
        "Flow-table counts and a page of entries",
        query=("cursor", "limit", "offset"),
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
            match = route.pattern.match(request.path_info)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            if route.method in WRITE_METHODS:
                self._authorize(request)
            body = _body(request) if route.body else None
            args = match.groupdict()
            with _errors():
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
        return {"vips": self.run(self.service.vips)}

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
        return self.run(lambda: self.service.health(self.clock(), self.wall_clock()))

    def lookup(self, request, body):
        params = dict(request.GET)
        return self.run(lambda: self.service.lookup(params, self.clock()))

    def flows(self, request, body):
        params = dict(request.GET)
        return self.run(lambda: self.service.flows(params, self.clock()))

    def status(self, request, body):
        return self.run(self.service.status)

    def metrics(self, request, body):
        text = self.run(self.service.metrics)
        return Response(text, content_type="text/plain", charset="utf-8")

    def openapi(self, request, body):
        return openapi.document(ROUTES)


class _errors:
    """Map the service's exceptions to HTTP errors (the one place that does)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or isinstance(error, http.HTTPException):
            return False
        if isinstance(error, (ConfigError, BadRequest)):
            problems = [{"path": p.path, "reason": p.reason} for p in error.problems]
            raise _with_json(http.HTTPBadRequest(), str(error), problems) from None
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


def _json_error(error: http.HTTPException) -> Response:
    payload = {"error": error.detail or error.title}
    problems = getattr(error, "problems", None)
    if problems:
        payload["problems"] = problems
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


def _body(request: Request):
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
        return Response(status=204)
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    return Response(text, status=status, content_type="application/json", charset="utf-8")


# ---- serving ----------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        LOG.debug("%s %s", self.address_string(), format % args)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _GreenServer:
    """The same for an eventlet hub (classic Ryu): one greenthread per request, so a request
    waiting for the controller's loop yields to it instead of blocking it."""

    def __init__(self, host: str, port: int, app):
        import eventlet  # noqa: PLC0415 - only present (and only wanted) with an eventlet hub
        import eventlet.wsgi  # noqa: PLC0415

        self._wsgi = eventlet.wsgi
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = eventlet.listen((host, port), family=family)  # binds now
        self.app = app

    def serve_forever(self) -> None:
        self._wsgi.server(self.socket, self.app, log_output=False)


def make(host: str, port: int, app, green: bool = False):
    """A WSGI server for ``app``, bound at once.  Threaded (one thread per request) unless
    ``green``; either way requests hand their work to the controller's loop, so they never run
    in parallel with it."""
    if green:
        return _GreenServer(host, port, app)
    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    return make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
