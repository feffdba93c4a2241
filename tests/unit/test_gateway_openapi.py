"""/openapi.json and docs/protocol.md say every status and error code the gateway answers."""

import re
from pathlib import Path

from torua.gateway.openapi import ERROR_TEXT, openapi_document
from torua.protocol.errors import HTTP_STATUS

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_code_is_in_the_protocol_document_with_its_status():
    table = (ROOT / "docs" / "protocol.md").read_text().split("## Error codes", 1)[1]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2:
            for code in re.findall(r"`([a-z_]+)`", cells[0]):
                rows[code] = cells[1]
    for code, status in HTTP_STATUS.items():
        assert code in rows, f"{code} is missing from docs/protocol.md#error-codes"
        assert rows[code] == "internal" or rows[code].startswith(str(status)), (code, rows[code])


def test_every_status_a_code_maps_to_has_an_openapi_response():
    assert set(HTTP_STATUS.values()) <= set(ERROR_TEXT)
    assert set(openapi_document()["components"]["responses"]) == {f"E{s}" for s in ERROR_TEXT}


def test_every_operation_documents_what_any_request_can_get():
    for path, item in openapi_document()["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            statuses = set(op["responses"])
            assert {"400", "405", "408", "414", "431", "500"} <= statuses, (method, path)
            keyed = op["x-torua-access"]["role"] != "public"
            assert ("401" in statuses) == keyed and op["security"] == ([{"apiKey": []}] if keyed else []), (method, path)
            assert ("403" in statuses) == (keyed or method in ("post", "put", "delete")), (method, path)
            takes_json = bool({"application/json", "application/x-ndjson"} & set(op.get("requestBody", {}).get("content", {})))
            assert ("415" in statuses) == takes_json, (method, path)
            if takes_json:
                said = "application/x-ndjson" if "application/x-ndjson" in op["requestBody"]["content"] else "application/json"
                assert f"Content-Type must be {said}" in op["requestBody"]["description"]
