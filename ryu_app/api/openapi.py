"""The OpenAPI 3.0 document of the REST API, built from the route table and the config schema.

Paths, parameters and request bodies come from ``rest.ROUTES`` and the deployment schema's field
tables: every converter declares the JSON Schema of what it accepts (patterns, formats, ranges,
enums, lengths, item counts; ``topology.schema``), so the document states what the server
enforces and cannot drift from it (``tests/ryu_app/test_openapi_schema.py`` holds the two to the
same samples).  What JSON Schema cannot say is said in descriptions and answered with a 400:
``table_size`` must be prime and at least the number of backends; names are unique (a 409 on
create); a tunnel IP belongs to one VM across VIPs; a VIP's address, port and protocol are
unique; a VIP needs a gateway address of its IP version; ``timeout`` < ``interval``; http checks
need a tcp VIP; a udp VIP needs ``health.port``.

Written here by hand: the shapes of the answers (the success bodies), which errors each
operation can give, and the links a client can follow from a created VIP or backend.
"""

from __future__ import annotations

import copy

from topology.deployment import BACKEND_FIELDS, HEALTH_FIELDS, VIP_FIELDS
from topology.schema import name, schema_of

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_OBJECT = {"type": "object"}
_VIP_REF = {"$ref": "#/components/schemas/Vip"}
_BACKEND_REF = {"$ref": "#/components/schemas/Backend"}

EXAMPLE_BACKEND = {"name": "vm9", "tunnel_ip": "10.20.0.19", "mac": "02:00:00:00:01:09"}
EXAMPLE_VIP = {
    "name": "api",
    "address": "203.0.113.20",
    "port": 443,
    "table_size": 65537,
    "backends": [{"name": "vm1", "tunnel_ip": "10.20.0.11", "mac": "02:00:00:00:01:01"}],
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {**_STRING, "description": "what went wrong (at most 300 characters)"},
        "problems": {
            "type": "array",
            "maxItems": 20,
            "description": "the first problems, each with its key path",
            "items": {
                "type": "object",
                "required": ["path", "reason"],
                "properties": {"path": _STRING, "reason": _STRING},
            },
        },
        "more_problems": {**_INTEGER, "minimum": 0, "description": "problems not listed"},
    },
}

# The success bodies, by operation.  Views other issues may extend stay open to new keys.
SUCCESS = {
    "list_vips": {
        "type": "object",
        "required": ["vips"],
        "properties": {"vips": {"type": "array", "items": _VIP_REF}},
    },
    "create_vip": _VIP_REF,
    "get_vip": _VIP_REF,
    "replace_vip": _VIP_REF,
    "list_backends": {"type": "array", "items": _BACKEND_REF},
    "add_backend": _VIP_REF,
    "put_backend": _VIP_REF,
    "patch_backend": _VIP_REF,
    "health": {
        "type": "object",
        "required": ["gateway", "vips", "panic", "overload"],
        "properties": {
            "gateway": _STRING,
            "panic": {
                "type": "object",
                "additionalProperties": {"type": "boolean"},
                "description": "per VIP: too few healthy backends, new flows go to all of them",
            },
            "overload": {
                **_OBJECT,
                "description": "this gateway's own overload: while true, probes left "
                "unanswered are inconclusive (docs/health-probes.md)",
            },
            "vips": {
                "type": "object",
                "additionalProperties": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["backend", "healthy", "weight", "probing"],
                        "properties": {
                            "backend": _STRING,
                            "healthy": {"type": "boolean"},
                            "weight": _INTEGER,
                            "probing": {"type": "boolean"},
                            "state": _STRING,
                            "last_result": {"type": "string", "nullable": True},
                        },
                    },
                },
            },
        },
    },
    "lookup": {
        "type": "object",
        "required": ["vip", "gateway", "backend", "source"],
        "properties": {
            "vip": _STRING,
            "gateway": _STRING,
            "backend": {"type": "string", "nullable": True, "description": "null: none healthy"},
            "source": {
                "type": "string",
                "enum": ["table", "hash", "slot"],
                "description": "table: the flow's entry; hash or slot: the VIP's placement",
            },
            "slot": {**_INTEGER, "minimum": 0, "description": "placement port-bits only"},
            "slot_bits": {
                **_STRING,
                "description": "placement port-bits only: the source-port bits of the slot",
            },
            "pinned_to": {
                **_STRING,
                "description": "mode switch only: the backend the switch's own pin for this "
                "flow sends to, as last read back from the switch (absent: no pin read)",
            },
        },
    },
    "flows": {
        "type": "object",
        "required": ["count", "by_backend", "counters", "flows"],
        "properties": {
            "count": {**_INTEGER, "minimum": 0},
            "by_backend": {"type": "object", "additionalProperties": _INTEGER},
            "counters": {"type": "object", "additionalProperties": _INTEGER},
            "flows": {
                "type": "array",
                "items": _OBJECT,
                "description": "the controller's entries, then the switch's pins of switch-mode"
                ' VIPs (those with "source": "switch", in flow-key order)',
            },
            "next_cursor": {
                "type": "string",
                "nullable": True,
                "description": "the next page's cursor; null on the last page",
            },
            "switch": {
                "type": "object",
                "description": "present while a VIP is in switch mode and its pins have been"
                " read back from the switch (flow statistics, about once a second)",
                "required": ["count", "kept", "truncated", "age_seconds", "by_backend"],
                "properties": {
                    "count": {**_INTEGER, "minimum": 0, "description": "pins in the switch"},
                    "kept": {**_INTEGER, "minimum": 0, "description": "pins listed"},
                    "truncated": {
                        **_INTEGER,
                        "minimum": 0,
                        "description": "pins counted but not kept (over the bound): not listed",
                    },
                    "age_seconds": {
                        "type": "number",
                        "minimum": 0,
                        "description": "how long ago the read began",
                    },
                    "by_backend": {"type": "object", "additionalProperties": _INTEGER},
                },
            },
        },
    },
    "status": {
        "type": "object",
        "required": ["gateway", "config_digest", "switch_connected", "vips"],
        "properties": {
            "gateway": _STRING,
            "config_digest": _STRING,
            "switch_connected": {"type": "boolean"},
            "flood_guard": {
                "type": "object",
                "description": "where the flood guard runs (switch, controller, off), its"
                " budget of new connections/s and what it dropped",
            },
            "switch_errors": {"type": "integer", "description": "messages the switch refused"},
            "vips": {
                "type": "object",
                "additionalProperties": _OBJECT,
                "description": "per VIP: digests, healthy set, table_current; a switch-mode"
                " VIP's slots (syn_packets, max_mean_syn_share: the fullest slot's SYNs over the"
                " mean, null while too few to tell) once read back from the switch",
            },
        },
    },
    "openapi": _OBJECT,
}
TEXT_SUCCESS = {"metrics"}  # Prometheus text
# Writes that may need new Maglev tables: 202 when they are saved and applied but their tables
# are not in by the time the answer is due (ryu_app.api.service.Accepted).
TABLE_CHANGES = {
    "create_vip",
    "replace_vip",
    "add_backend",
    "put_backend",
    "patch_backend",
    "delete_backend",
}
ACCEPTED = {
    "description": "saved and applied; its Maglev tables are still being built",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["vip", "tables_pending", "detail"],
                "properties": {
                    "vip": _STRING,
                    "tables_pending": {"type": "array", "items": _STRING},
                    "detail": _STRING,
                },
            }
        }
    },
}

# Errors by cause, and which operations can meet each cause.
ERRORS = {
    400: "a bad body or parameter; problems name the fields",
    401: "no or a wrong 'Authorization: Bearer <token>'",
    403: "a write from another origin (its Origin header)",
    404: "no such VIP or backend (or a name that cannot be one)",
    409: "the name exists",
    413: "the body is larger than the limit",
    415: "the body is not 'Content-Type: application/json'",
    500: "the state file could not be written (nothing changed)",
    503: "the controller did not answer in time",
}
CONFLICTS = {"create_vip", "add_backend"}


def request_schemas() -> dict:
    """The request bodies: the deployment schema's own field tables."""
    vip = {**VIP_FIELDS.json_schema, "example": EXAMPLE_VIP}
    backend = {**BACKEND_FIELDS.json_schema, "example": EXAMPLE_BACKEND}
    patch = copy.deepcopy(BACKEND_FIELDS.json_schema)
    del patch["required"]  # PATCH: only the fields given change
    patch["example"] = {"weight": 0}
    return {
        "Vip": vip,
        "Backend": backend,
        # PUT: the URL names what is replaced, so the body's name may be left out (if given,
        # it must be the URL's: a 400 otherwise).
        "VipReplace": _name_optional(vip),
        "BackendReplace": _name_optional(backend),
        "BackendPatch": patch,
        "Health": HEALTH_FIELDS.json_schema,
        "Error": ERROR,
    }


def _name_optional(schema: dict) -> dict:
    replace = copy.deepcopy(schema)
    replace["required"] = [field for field in replace["required"] if field != "name"]
    return replace


def error_codes(route, auth: bool) -> list[int]:
    codes = set()
    if route.operation != "openapi":  # the only one not run on the controller's loop
        codes.add(503)
    if "{" in route.template or route.operation == "lookup":
        codes.add(404)
    if route.query or route.body:
        codes.add(400)
    if route.method in WRITE_METHODS:
        codes |= {403, 500} | ({401} if auth else set())
    if route.body:
        codes |= {413, 415}
    if route.operation in CONFLICTS:
        codes.add(409)
    return sorted(codes)


def document(routes, auth: bool = False) -> dict:
    """The whole document; ``auth``: writes need the bearer token (as this gateway is set up)."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths: dict[str, dict] = {}
    for route in routes:
        responses = {str(route.success): _success(route, routes)}
        if route.operation in TABLE_CHANGES:
            responses["202"] = ACCEPTED
        for code in error_codes(route, auth):
            responses[str(code)] = {"description": ERRORS[code], **error}
        operation = {
            "operationId": route.operation,
            "summary": route.summary,
            "responses": responses,
        }
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": schema_of(name)}
            for p in _path_parameters(route.template)
        ]
        parameters += [
            {"name": q.name, "in": "query", "required": q.required, "schema": schema_of(q.convert)}
            for q in route.query
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.body:
            body = f"{route.body}Replace" if route.method == "PUT" else route.body
            ref = {"$ref": f"#/components/schemas/{body}"}
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref}},
            }
        if auth and route.method in WRITE_METHODS:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(route.template, {})[route.method.lower()] = operation
    components: dict = {"schemas": request_schemas()}
    if auth:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Lockstep gateway", "version": "1"},
        "paths": paths,
        "components": components,
    }


def _success(route, routes) -> dict:
    if route.success == 204:
        return {"description": "done"}
    media = "text/plain" if route.operation in TEXT_SUCCESS else "application/json"
    schema = _STRING if media == "text/plain" else SUCCESS[route.operation]
    result = {"description": "success", "content": {media: {"schema": schema}}}
    links = _links(route, routes)
    if links:
        result["links"] = links
    return result


def _links(route, routes) -> dict:
    """From a write to the operations on what it wrote: a POST's new name comes from its body
    (``$request.body#/name``), the names in its own path from the path."""
    if route.method not in ("POST", "PUT"):
        return {}
    given = {p: f"$request.path.{p}" for p in _path_parameters(route.template)}
    if route.method == "POST":
        children = [r.template for r in routes if r.template.startswith(route.template + "/{")]
        if not children:
            return {}
        child = children[0][len(route.template) + 2 :].split("}")[0]
        given[child] = "$request.body#/name"
        base = f"{route.template}/{{{child}}}"
    else:
        base = route.template
    links = {}
    for other in routes:
        needed = _path_parameters(other.template)
        if other is route or not (other.template + "/").startswith(base + "/"):
            continue
        if set(needed) <= set(given):
            links[other.operation] = {
                "operationId": other.operation,
                "parameters": {p: given[p] for p in needed},
            }
    return links


def _path_parameters(template: str) -> list[str]:
    return [part[1:-1] for part in template.split("/") if part.startswith("{")]
