"""Property-based run of schemathesis against the published OpenAPI schema of a real server
(uvicorn on loopback): no server errors, responses as documented. Bounded examples."""

from __future__ import annotations

import json
from collections.abc import Iterator

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.config import Settings

from .conftest import ADMIN_KEY, make_settings, token
from .server_thread import ServerThread

MAX_EXAMPLES = 15


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: object, value: object) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    try:
        return orjson.dumps(value, default=str)
    except TypeError:  # integers beyond 64 bits, which orjson refuses: the client's problem
        return json.dumps(value, default=str).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    base = Settings(data_dir=tmp_path_factory.mktemp("st"), hash_key="x" * 24)
    s = make_settings(base, "", rate_limit=10_000.0, rate_burst=10_000)
    with ServerThread(s) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(server: ServerThread) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# schemathesis' own pytest plugin does not run under pytest 9 yet: drive its strategies with
# hypothesis directly, one bounded run per operation and generation mode
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


def operations(schema: schemathesis.BaseSchema) -> list[schemathesis.APIOperation]:
    return [r.ok() for r in schema.get_all_operations()]


def run_operation(op: schemathesis.APIOperation, mode: GenerationMode, base_url: str,
                  auth: str, examples: int) -> None:
    @given(case=op.as_strategy(generation_mode=mode))
    @hsettings(max_examples=examples, deadline=None, database=None,
               suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {auth}"},
                               checks=CHECKS)

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # nothing invalid to generate for this operation (e.g. a GET without parameters)


def test_schema_lists_every_endpoint(api_schema: schemathesis.BaseSchema) -> None:
    labels = {op.label for op in operations(api_schema)}
    assert {"GET /v1/subscribers/{subscriber_id}/policy",
            "PUT /v1/subscribers/{subscriber_id}/policy",
            "PATCH /v1/subscribers/{subscriber_id}/policy",
            "GET /v1/subscribers/{subscriber_id}/quarantine",
            "POST /v1/subscribers/{subscriber_id}/quarantine/{message_id}/release",
            "POST /v1/subscribers/{subscriber_id}/feedback",
            "GET /v1/operator/policies/export",
            "POST /v1/operator/policies/import"} <= labels


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_api_as_operator(api_schema: schemathesis.BaseSchema, server: ServerThread,
                         mode: GenerationMode) -> None:
    for op in operations(api_schema):
        run_operation(op, mode, server.url, ADMIN_KEY, MAX_EXAMPLES)


def test_api_as_subscriber(api_schema: schemathesis.BaseSchema, server: ServerThread) -> None:
    for op in operations(api_schema):
        run_operation(op, GenerationMode.POSITIVE, server.url, token("sub-1"), 5)
