"""relevo.Client against a real server: what a notebook's DataFrames hold reaches it as the
values they are, and what JSON cannot say is refused before it is sent."""

from __future__ import annotations

import decimal
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

import relevo
from relevo.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    RelevoError,
    UnavailableError,
)


def _customers(churn_frame: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    rows = churn_frame.head(n).drop(columns="churned").copy()
    rows["satisfaction"] = rows["satisfaction"].astype(float).fillna(3.0)
    return rows.reset_index(drop=True)


def test_an_infinite_number_is_refused_naming_it_not_sent_as_a_missing_value(
    live_server, churn_frame
):
    rows = _customers(churn_frame)
    rows.loc[2, "satisfaction"] = np.inf  # a nullable column: null would have been answered
    client = relevo.Client(live_server.url, batch_rows=2)
    with client, pytest.raises(InvalidInputError) as caught:
        client.predict("churn", rows)
        # its row in the frame, though it would have gone in the second request
        assert [(p.row, p.column) for p in caught.value.problems] == [(2, "satisfaction")]
        with pytest.raises(InvalidInputError, match="infinite"):
            client.predict_records("churn", [{**rows.iloc[0].to_dict(), "age": -np.inf}])


def test_decimals_and_times_in_object_columns_are_sent_as_their_values(live_server, churn_frame):
    rows = _customers(churn_frame)
    with relevo.Client(live_server.url) as client:
        plain = client.predict("churn", rows)
        exact = rows.assign(
            monthly_charges=rows["monthly_charges"].map(lambda v: decimal.Decimal(repr(v)))
        )
        # what read_sql gives for a NUMERIC column: the same numbers, the same answers
        assert client.predict("churn", exact)["probability"].tolist() == pytest.approx(
            plain["probability"].tolist(), abs=1e-12
        )
        # a time the model does not take is a column it ignores, not a TypeError
        stamped = rows.assign(seen=[pd.Timestamp("2026-12-01T10:00:00")] * len(rows))
        stamped["seen"] = stamped["seen"].astype(object)
        assert len(client.predict("churn", stamped)) == len(rows)


# 5. client: NaT goes as the text "NaT"; a NumPy float32 infinity goes as null
def test_client_sends_nat_as_null():
    import orjson

    from relevo.client import _dumps

    assert orjson.loads(_dumps({"instances": [{"t": pd.NaT}]})) == {"instances": [{"t": None}]}


def test_client_refuses_a_float32_infinity():
    from relevo.client import _refuse_infinities

    with pytest.raises(InvalidInputError, match="infinite"):
        _refuse_infinities([{"a": np.float32("inf")}])


def test_a_list_of_rows_given_to_predict_says_which_method_takes_it(churn_frame):
    # it failed with "AttributeError: 'list' object has no attribute 'columns'", from deep inside
    rows = _customers(churn_frame).to_dict("records")
    client = relevo.Client("http://127.0.0.1:9")  # nothing is sent
    with client, pytest.raises(TypeError, match="predict_records"):
        client.predict("churn", rows)  # type: ignore[arg-type]


def test_a_redeploy_through_the_client_keeps_the_routing_key_unless_told(
    live_server, rv, churn_pipeline, churn_frame
):
    """`deployed` routes by customer_id: a client deploy without `key` keeps it (as
    `relevo deploy` and the PUT route do); `key=None` removes it."""
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    with relevo.Client(live_server.url) as client:
        swapped = client.deploy("churn", "churn:2")
        assert swapped["model"] == "churn:2" and swapped["key_column"] == "customer_id"
        assert client.deployment("churn")["key_column"] == "customer_id"
        assert client.deploy("churn", "churn:1", key="account_id")["key_column"] == "account_id"
        assert client.deploy("churn", "churn:2", key=None)["key_column"] is None


def test_a_name_is_sent_as_one_path_segment_not_as_a_query_or_another_resource(
    live_server, rv, churn_pipeline, churn_frame
):
    """`churn?x` read deployment churn (the rest went as a query), `x/../churn` redeployed
    churn, `churn#1` posted to churn's URL without the predict path (a bare 405)."""
    rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rows = _customers(churn_frame)
    with relevo.Client(live_server.url) as client:
        with pytest.raises(NotFoundError, match=r"deployment 'churn\?x' not found"):
            client.deployment("churn?x")
        with pytest.raises(NotFoundError, match="deployment 'churn#1' not found"):
            client.predict("churn#1", rows)
        with pytest.raises(InvalidInputError, match="invalid deployment name"):
            client.deploy("x/../churn", "churn:2")
        assert client.deployment("churn")["model"] == "churn:1"  # untouched
        with pytest.raises(NotFoundError, match=r"deployment '\.\.' not found"):
            client.deployment("..")
        with pytest.raises(InvalidInputError, match="deployment name is empty"):
            client.deployment("")


def test_a_name_no_deployment_can_have_gets_the_servers_and_the_clis_message(
    live_server, churn_frame
):
    """`a/b` came back as a bare "Not Found" (the path reached no route), whatever the call."""
    rows = _customers(churn_frame)
    names = "letters, digits, '.', '_' and '-'"
    with relevo.Client(live_server.url) as client:
        # as `relevo deploy a/b churn:1` and `PUT /v1/deployments/a%20b` say it
        with pytest.raises(InvalidInputError) as caught:
            client.deploy("a/b", "churn:1")
        assert str(caught.value) == (
            "invalid deployment name 'a/b': use letters, digits, '.', '_' or '-' "
            "(up to 200 characters, starting with a letter or digit)"
        )
        # as `GET /v1/deployments/a%20b` (and every route reading a deployment) says it
        for call in (
            lambda: client.deployment("a/b"),
            lambda: client.status("a/b"),
            lambda: client.history("a/b"),
            lambda: client.promote("a/b"),
            lambda: client.rollback("a/b"),
            lambda: client.predict("a/b", rows),
            lambda: client.predict_records("a/b", rows.to_dict("records")),
        ):
            with pytest.raises(NotFoundError) as missing:
                call()
            assert (
                str(missing.value)
                == f"deployment 'a/b' not found: names are {names} (up to 200 characters)"
            )
        assert [d["name"] for d in client.deployments()] == ["churn"]


def test_a_body_over_the_servers_limit_is_a_payload_too_large_error(
    live_server, spawn_server, churn_frame
):
    """It came back as a bare RelevoError whose `http_status` said 500."""
    url = spawn_server(live_server.settings.model_copy(update={"max_body_mb": 0.01}))
    rows = _customers(churn_frame, 200)
    with relevo.Client(url) as client:
        with pytest.raises(PayloadTooLargeError, match="RELEVO_MAX_BODY_MB") as caught:
            client.predict("churn", rows)
        assert caught.value.http_status == 413
        assert len(client.predict("churn", rows.head(2))) == 2  # a small one is answered


def test_a_server_side_failure_names_its_request_id_found_in_the_server_log(
    live_server, churn_frame, monkeypatch, caplog
):
    """The 500's body names the request whose traceback the server logged; the client
    dropped it and said only "internal error"."""
    from relevo.registry.flavors.sklearn import EstimatorModel

    def explode(self, frame):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(EstimatorModel, "predict", explode)
    with (
        relevo.Client(live_server.url) as client,
        caplog.at_level("ERROR"),
        pytest.raises(RelevoError, match="internal error") as caught,
    ):
        client.predict("churn", _customers(churn_frame))
    assert caught.value.http_status == 500
    request_id = str(caught.value).rpartition("request id ")[2].split()[0]
    logged = [r for r in caplog.records if f"[request {request_id}]" in r.getMessage()]
    assert len(request_id) == 16 and len(logged) == 1
    assert "model exploded" in str(logged[0].exc_info[1])


def test_health_and_readiness_of_a_server_that_cannot_be_reached(free_port):
    """Both raised httpx.ConnectError, the one call that escaped relevo's exceptions."""
    with relevo.Client(f"http://127.0.0.1:{free_port()}") as client:
        assert client.health() is False
        with pytest.raises(UnavailableError, match="cannot reach the relevo server"):
            client.ready()


def test_health_and_readiness_of_a_live_server(live_server):
    with relevo.Client(live_server.url) as client:
        assert client.health() is True
        assert client.ready() == {"ready": True, "deployments": {"churn": "churn:1"}}


def _html_server(status_of: dict[str, int]) -> Iterator[str]:
    """A web service that is not relevo on a loopback port, answering each method in
    `status_of` with that status and an HTML page; yields its URL."""

    class Page(BaseHTTPRequestHandler):
        def _page(self) -> None:
            status = status_of[self.command]
            body = f"<html><head><title>{status}</title></head><body>not relevo</body></html>"
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        do_GET = do_POST = do_PUT = _page

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def web_page() -> Iterator[str]:
    """Another web service (a page, not relevo) on a loopback port: the URL a client is given
    by mistake."""
    yield from _html_server({"GET": 200, "POST": 200, "PUT": 200})


def test_a_url_that_is_not_a_relevo_server_says_so(web_page, churn_frame):
    """A 200 page that is not JSON raised json's JSONDecodeError from inside httpx."""
    with relevo.Client(web_page) as client:
        for call in (
            client.models,
            lambda: client.deployment("churn"),
            lambda: client.predict("churn", _customers(churn_frame)),
            client.ready,
        ):
            with pytest.raises(
                UnavailableError, match=rf"is {re.escape(web_page)} a relevo server"
            ):
                call()
        with pytest.raises(UnavailableError, match="answered 200 OK with text/html"):
            client.models()


@pytest.fixture
def failing_proxy() -> Iterator[str]:
    """A reverse proxy in front of a relevo server that is down: its HTML error pages, 502
    Bad Gateway for a POST, 504 Gateway Timeout for a GET."""
    yield from _html_server({"GET": 504, "POST": 502, "PUT": 502})


def test_a_proxys_bad_gateway_or_timeout_is_unavailable_not_a_server_failure(
    failing_proxy, churn_frame
):
    """A proxy's 502 or 504 raised the base RelevoError, whose status said 500 (a failure of
    relevo's), with the proxy's HTML page as its message."""
    with relevo.Client(failing_proxy) as client:
        with pytest.raises(UnavailableError) as bad_gateway:
            client.predict("churn", _customers(churn_frame))
        with pytest.raises(UnavailableError) as timed_out:
            client.deployment("churn")
    assert (bad_gateway.value.http_status, timed_out.value.http_status) == (503, 503)
    assert str(bad_gateway.value).startswith(
        "POST /v1/deployments/churn/predict answered 502 Bad Gateway (text/html)"
    )
    assert "answered 504 Gateway Timeout (text/html)" in str(timed_out.value)
    assert "<html>" not in str(bad_gateway.value) + str(timed_out.value)


def test_a_server_that_takes_too_long_is_not_called_unreachable():
    """A read timeout said "cannot reach the relevo server": it was reached, and a promote or
    a deploy sent there may have been done, which a user retrying must know."""
    with socket.socket() as silent:  # connections complete in the backlog, nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with (
            relevo.Client(url, timeout=0.5) as client,
            pytest.raises(UnavailableError) as caught,
        ):
            client.deploy("churn", "churn:2")
    message = str(caught.value)
    assert "cannot reach" not in message
    assert "did not answer PUT /v1/deployments/churn within 0.5 s" in message
    assert "check before sending it again" in message


def test_a_problem_with_a_request_field_keeps_its_field(live_server):
    """The server names a query parameter's problem by `field`; the client dropped it (the
    Problem had neither row, column nor field)."""
    with relevo.Client(live_server.url) as client, pytest.raises(InvalidInputError) as caught:
        client._request("GET", "/v1/deployments/churn/drift?since=yesterday")
    assert [p.to_dict() for p in caught.value.problems] == [
        {"field": "since", "message": "a duration such as 30m, 24h or 7d, or an ISO timestamp"}
    ]
    # the message is the server's own `error`, which names the field
    assert str(caught.value) == (
        "invalid since 'yesterday': a duration such as 30m, 24h or 7d, or an ISO timestamp"
    )


@pytest.mark.parametrize("columns", [True, False], ids=["with-columns", "no-columns"])
def test_a_frame_without_rows_is_refused_as_the_server_refuses_no_instances(
    live_server, churn_frame, columns
):
    """It came back as an empty DataFrame without even the id, model and output columns."""
    empty = _customers(churn_frame).head(0) if columns else pd.DataFrame()
    with relevo.Client(live_server.url) as client:
        with pytest.raises(InvalidInputError) as caught:
            client.predict("churn", empty)
        assert str(caught.value) == "the DataFrame has no rows: nothing to score"
        # what the server says to the same request, and the client for a list of no rows
        with pytest.raises(InvalidInputError, match="'instances' is empty"):
            client.predict_records("churn", [])


def test_a_problem_in_a_later_batch_names_its_row_in_the_frame(live_server, churn_frame):
    """With batch_rows=2, the frame's row 3 was reported as row 1 (its row in the batch)."""
    rows = _customers(churn_frame, 4)
    rows["age"] = rows["age"].astype(object)
    rows.loc[3, "age"] = "x"
    client = relevo.Client(live_server.url, batch_rows=2)
    with client, pytest.raises(InvalidInputError) as caught:
        client.predict("churn", rows)
    assert [p.to_dict() for p in caught.value.problems] == [
        {"row": 3, "column": "age", "message": "expected a number, got 'x'"}
    ]
    assert "row 3, column 'age'" in str(caught.value)
