"""openapi/openapi.json is generated from the app; this fails when it is stale."""

from __future__ import annotations

import json

from service.openapi import PATH, render


def test_openapi_file_matches_the_app() -> None:
    assert PATH.exists(), "openapi/openapi.json is missing: run `make openapi`"
    assert PATH.read_text() == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_openapi_documents_every_v1_endpoint_and_the_problem_codes() -> None:
    document = json.loads(PATH.read_text())
    assert {"/v1/notifications", "/v1/notifications/{notification_id}", "/v1/me/notifications",
            "/v1/me/unread-count", "/health/live", "/health/ready"} <= set(document["paths"])
    assert set(document["components"]["securitySchemes"]) == {"apiKey", "userToken"}


def test_every_error_answer_is_documented_as_a_problem_document() -> None:
    """The service answers errors with problem documents; the document must not promise another shape."""
    document = json.loads(PATH.read_text())
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            errors = {status: spec for status, spec in operation["responses"].items() if status.startswith(("4", "5"))}
            assert "401" in errors, (method, path)
            for status, spec in errors.items():
                schema = spec["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
