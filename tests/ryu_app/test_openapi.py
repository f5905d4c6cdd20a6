"""The served OpenAPI document: every route, the errors each can give, and security only when
the gateway has a token.  (That its schemas say what the validator enforces:
test_openapi_schema.py.)"""

from __future__ import annotations

import schemathesis

from ryu_app.api import openapi, rest
from ryu_app.api.rest import ROUTES
from topology import deployment as deployment_file
from topology.deployment import BACKEND_FIELDS, HEALTH_FIELDS, VIP_FIELDS
from topology.schema import REQUIRED


def operations(document):
    for template, methods in document["paths"].items():
        for method, operation in methods.items():
            yield template, method.upper(), operation


def test_openapi_lists_every_route(harness):
    document = harness.get_json("/v1/openapi.json")
    assert document["openapi"].startswith("3.")
    listed = [(t, m, op["operationId"]) for t, m, op in operations(document)]
    assert sorted(listed) == sorted((r.template, r.method, r.operation) for r in ROUTES)
    for route in ROUTES:
        operation = document["paths"][route.template][route.method.lower()]
        assert str(route.success) in operation["responses"]
        params = {(p["name"], p["in"]) for p in operation.get("parameters", [])}
        assert {n for n, where in params if where == "path"} == set(route.pattern.groupindex)
        assert {n for n, where in params if where == "query"} == {q.name for q in route.query}
        if route.body:
            content = operation["requestBody"]["content"]
            assert list(content) == ["application/json"]  # the only type writes take (415)
            ref = content["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in document["components"]["schemas"]


def test_security_is_stated_only_when_writes_need_the_token(make_harness):
    open_document = make_harness().get_json("/v1/openapi.json")
    assert "securitySchemes" not in open_document["components"]
    assert all("security" not in op for _, _, op in operations(open_document))
    assert all("401" not in op["responses"] for _, _, op in operations(open_document))
    document = make_harness(token="s3cret").get_json("/v1/openapi.json")
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for _, method, operation in operations(document):
        writes = method in rest.WRITE_METHODS
        assert ("security" in operation) == writes
        assert ("401" in operation["responses"]) == writes


def test_each_operation_lists_the_errors_it_can_give(harness):
    document = harness.get_json("/v1/openapi.json")
    responses = {op["operationId"]: set(op["responses"]) for _, _, op in operations(document)}
    assert responses["create_vip"] == {
        *("201", "202", "400", "403", "409", "413", "415", "500", "503")
    }
    assert responses["patch_backend"] == {
        *("200", "202", "400", "403", "404", "413", "415", "500", "503")
    }
    assert responses["delete_vip"] == {"204", "403", "404", "500", "503"}
    assert responses["flows"] == {"200", "400", "503"}
    assert responses["lookup"] == {"200", "400", "404", "503"}
    assert responses["openapi"] == {"200"}
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["problems"]["maxItems"] == rest.SHOWN_PROBLEMS


def test_flows_pages_by_cursor_as_documented(harness):
    document = harness.get_json("/v1/openapi.json")
    operation = document["paths"]["/v1/flows"]["get"]
    cursor = next(p for p in operation["parameters"] if p["name"] == "cursor")
    assert cursor["schema"]["pattern"].startswith("^")
    success = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert success["properties"]["next_cursor"]["nullable"] is True
    assert harness.get_json("/v1/flows?cursor=0-0")["next_cursor"] is None  # an empty table
    response = harness.request("GET", "/v1/flows?cursor=0-0%0A")
    assert response.status_int == 400


def test_query_and_path_parameters_state_their_types_and_ranges(harness):
    document = harness.get_json("/v1/openapi.json")
    flows = {p["name"]: p for p in document["paths"]["/v1/flows"]["get"]["parameters"]}
    assert flows["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert flows["offset"]["schema"]["minimum"] == 0 and not flows["offset"]["required"]
    lookup = {p["name"]: p for p in document["paths"]["/v1/lookup"]["get"]["parameters"]}
    assert lookup["src_port"]["schema"]["maximum"] == 65535 and lookup["src_port"]["required"]
    assert lookup["proto"]["schema"]["enum"] == ["tcp", "udp", "6", "17"]
    (vip,) = document["paths"]["/v1/vips/{vip}"]["get"]["parameters"]
    assert vip["schema"]["pattern"] == "^(?:[A-Za-z][A-Za-z0-9_.-]{0,62})$"


def test_the_request_schemas_are_the_validators_fields(harness):
    schemas = harness.get_json("/v1/openapi.json")["components"]["schemas"]
    for name, section in (("Vip", VIP_FIELDS), ("Backend", BACKEND_FIELDS)):
        required = {k for k, f in section.fields.items() if f.default is REQUIRED}
        assert set(schemas[name]["properties"]) == set(section.fields)
        assert set(schemas[name].get("required", [])) == required
        assert schemas[name]["additionalProperties"] is False
    assert set(schemas["Health"]["properties"]) == set(HEALTH_FIELDS.fields)
    assert schemas["Vip"]["properties"]["health"]["nullable"] is True  # null: every default
    assert schemas["Vip"]["properties"]["backends"]["maxItems"] == deployment_file.MAX_BACKENDS
    assert schemas["Vip"]["properties"]["table_size"]["maximum"] == 655_373
    assert schemas["Health"]["properties"]["interval"]["default"] == 2.0
    assert "required" not in schemas["BackendPatch"]


def test_the_examples_are_valid_bodies():
    deployment_file.parse_vip(openapi.EXAMPLE_VIP)
    deployment_file.parse_backend(openapi.EXAMPLE_BACKEND)


def test_a_created_vip_links_to_the_operations_on_it(harness):
    document = harness.get_json("/v1/openapi.json")
    links = document["paths"]["/v1/vips"]["post"]["responses"]["201"]["links"]
    assert links["get_vip"]["parameters"] == {"vip": "$request.body#/name"}
    assert set(links) >= {"get_vip", "replace_vip", "delete_vip", "add_backend"}
    links = document["paths"]["/v1/vips/{vip}/backends"]["post"]["responses"]["201"]["links"]
    assert links["patch_backend"]["parameters"] == {
        "vip": "$request.path.vip",
        "backend": "$request.body#/name",
    }


def test_the_document_loads_in_schemathesis(harness):
    schema = schemathesis.openapi.from_dict(harness.get_json("/v1/openapi.json"))
    assert len(list(schema.get_all_operations())) == len(ROUTES)


def test_a_put_body_may_leave_out_the_name_the_url_gives(harness):
    """The server takes a PUT's name from its URL (schemathesis found the document saying
    otherwise), so the document's PUT bodies do not require it; POST's do."""
    document = harness.get_json("/v1/openapi.json")
    schemas = document["components"]["schemas"]
    for put, post in (("VipReplace", "Vip"), ("BackendReplace", "Backend")):
        assert "name" in schemas[post]["required"]
        assert "name" not in schemas[put]["required"]
        assert set(schemas[put]["required"]) == set(schemas[post]["required"]) - {"name"}
    body = document["paths"]["/v1/vips/{vip}"]["put"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/VipReplace")
    vm9 = {"tunnel_ip": "192.168.100.19", "mac": "02:00:00:00:01:09"}
    assert harness.request("PUT", "/v1/vips/web/backends/vm9", vm9).status_int == 200
    web = {k: v for k, v in harness.get_json("/v1/vips/web").items() if k != "name"}
    assert harness.request("PUT", "/v1/vips/web", web).status_int == 200
