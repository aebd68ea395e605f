"""Issue 12 item 8: a property-based fuzzer (schemathesis) over the OpenAPI document, against a
live server over real HTTP with the churn model deployed: no answer is a 5xx, and every answer
has a status, content type and body that the document declares.

Bounded and repeatable: at most 10 valid and 10 invalid generated requests per operation (18
operations, so at most 360 requests), derandomized (the same examples on every run), no
deadline (a shared CI machine is slow at times, never wrong).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from relevo.context import Relevo
from relevo.server.background import BackgroundServer
from relevo.settings import Settings

VERSION_PATH = "/v1/models/{name}/versions/{version}"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_server(
    tmp_path_factory: pytest.TempPathFactory, churn_pipeline, churn_frame
) -> Iterator[str]:
    home: Path = tmp_path_factory.mktemp("fuzz")
    server_settings = Settings(
        home=home,
        database_url=f"sqlite:///{(home / 'relevo.db').as_posix()}",
        poll_interval_s=0.2,
        log_flush_interval_s=0.05,
    )
    rv = Relevo(settings=server_settings)
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref, key="customer_id")
    server = BackgroundServer(server_settings)
    server.start()
    try:
        server.wait_until_serving("churn", version.ref)
        yield server.url
    finally:
        server.stop()
        rv.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(fuzzed_server: str, mode: GenerationMode) -> None:
    # (schemathesis' pytest plugin, `from_fixture`, needs a pytest private attribute that
    # pytest 9 no longer has: the operations are walked here with Hypothesis directly)
    schema = schemathesis.openapi.from_url(f"{fuzzed_server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # issue 14 added promote, rollback, history, status; issue 15 drift and the 7 alert
    # operations; issue 16 feedback and performance
    assert len(operations) == 32
    if mode is GenerationMode.NEGATIVE:
        assert len([op for op in operations if op.body]) == 9  # + silences, monitoring, feedback
        # what can be invalid: bodies and typed parameters (any text is a valid name)
        operations = [op for op in operations if op.body or op.path == VERSION_PATH]
    failures: dict[str, str] = {}
    for operation in operations:

        @settings(
            max_examples=10,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except Exception as exc:  # one report for every operation that failed
            failures[operation.label] = str(exc)
    assert not failures, "\n\n".join(f"{label}: {error}" for label, error in failures.items())
