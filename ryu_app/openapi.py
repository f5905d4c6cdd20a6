"""The OpenAPI 3.0 document of the REST API, built from the route table and the config schema.

Paths come from ``rest.ROUTES``; request bodies from the deployment schema's field tables (so
defaults and required fields are the validator's own).  Only the JSON types are written here,
and a unit test checks they cover exactly the schema's fields.
"""

from __future__ import annotations

from topology.deployment import BACKEND_FIELDS, HEALTH_FIELDS, VIP_FIELDS
from topology.schema import REQUIRED, Section

_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_NUMBER = {"type": "number"}

TYPES = {
    "Health": {
        "type": {"type": "string", "enum": ["tcp", "http"]},
        "port": {**_INTEGER, "nullable": True, "description": "default: the VIP's port"},
        "path": _STRING,
        "expect_status": _INTEGER,
        "interval": {**_NUMBER, "description": "seconds between probes"},
        "timeout": {**_NUMBER, "description": "seconds a probe may take"},
        "rise": {**_INTEGER, "description": "successes that bring a backend up"},
        "fall": {**_INTEGER, "description": "failures that take a backend down"},
    },
    "Backend": {
        "name": _STRING,
        "tunnel_ip": {**_STRING, "description": "the VM's VXLAN tunnel endpoint"},
        "mac": {**_STRING, "description": "inner destination MAC (the VM's VXLAN device)"},
        "weight": {**_INTEGER, "description": "0 drains: no new flows, existing ones stay"},
    },
    "Vip": {
        "name": _STRING,
        "address": {**_STRING, "description": "IPv4 or IPv6"},
        "port": _INTEGER,
        "protocol": {"type": "string", "enum": ["tcp", "udp"]},
        "hash": {"type": "string", "enum": ["5-tuple", "src-ip"]},
        "table_size": {**_INTEGER, "description": "prime; Maglev lookup table size"},
        "idle_timeout": {**_INTEGER, "nullable": True, "description": "default 60 tcp, 30 udp"},
        "vni": _INTEGER,
        "health": {"$ref": "#/components/schemas/Health"},
        "backends": {"type": "array", "items": {"$ref": "#/components/schemas/Backend"}},
    },
}
SECTIONS = {"Health": HEALTH_FIELDS, "Backend": BACKEND_FIELDS, "Vip": VIP_FIELDS}


def schema(name: str, section: Section, all_optional: bool = False) -> dict:
    properties = {}
    required = []
    for key, field in section.fields.items():
        prop = dict(TYPES[name][key])
        if field.default is REQUIRED:
            required.append(key)
        elif field.default is not None and not isinstance(field.default, (list, dict)):
            prop["default"] = field.default
        properties[key] = prop
    result = {"type": "object", "properties": properties, "additionalProperties": False}
    if required and not all_optional:
        result["required"] = required
    return result


def document(routes) -> dict:
    schemas = {name: schema(name, section) for name, section in SECTIONS.items()}
    schemas["BackendPatch"] = schema("Backend", BACKEND_FIELDS, all_optional=True)
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error": _STRING,
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"path": _STRING, "reason": _STRING},
                },
            },
        },
    }
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    paths: dict[str, dict] = {}
    for route in routes:
        operation = {
            "operationId": route.operation,
            "summary": route.summary,
            "responses": {str(route.success): {"description": "success"}, "default": error},
        }
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": _STRING}
            for p in _path_parameters(route.template)
        ]
        parameters += [{"name": q, "in": "query", "schema": _STRING} for q in route.query]
        if parameters:
            operation["parameters"] = parameters
        if route.body:
            ref = {"$ref": f"#/components/schemas/{route.body}"}
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref}},
            }
        if route.method in ("POST", "PUT", "PATCH", "DELETE"):
            operation["security"] = [{"bearer": []}]
        paths.setdefault(route.template, {})[route.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "Lockstep gateway", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path_parameters(template: str) -> list[str]:
    return [part[1:-1] for part in template.split("/") if part.startswith("{")]
