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
