"""CORS through flask-cors, configured from CORS_ORIGINS: the cases its 2024 advisories
describe (paths with `+`, capitals, patterns, private networks), held against our setup."""

import logging

import pytest
from fakes import fake_app

from app.settings import ConfigError, Settings

LAB = "https://lab.example"
PATHS = ("/ping", "/PING", "/ping+", "/ping%2B", "/invocations+x", "/model")


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    return fake_app(tmp_path_factory.mktemp("m"), cors_origins=(LAB, "http://localhost:8080")).test_client()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return fake_app(tmp_path_factory.mktemp("m"), cors_origins=(LAB,)).test_client()


def preflight(client, origin: str, path: str = "/invocations", **extra):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "POST", **extra})


@pytest.mark.parametrize("path", PATHS)
def test_every_path_gets_the_same_answer_whatever_its_spelling(fake_client, narrow, path):
    # A `+`, a %2B or capitals in the path changed which rule applied (CVE-2024-6844, -6866):
    # here one rule covers every path, 404s included.
    assert (
        fake_client.get(path, headers={"Origin": "https://anyone.example"}).headers["Access-Control-Allow-Origin"]
        == "*"
    )
    assert narrow.get(path, headers={"Origin": LAB}).headers["Access-Control-Allow-Origin"] == LAB
    assert "Access-Control-Allow-Origin" not in narrow.get(path, headers={"Origin": "https://evil.example"}).headers


@pytest.mark.parametrize(
    "origin", ["https://labXexample", "https://lab.example.evil.com", "http://lab.example", "https://lab.example:444"]
)
def test_a_listed_origin_matches_itself_only_never_as_a_pattern(narrow, origin):
    # The dot is a dot: flask-cors reads an origin with pattern characters as a regex.
    assert "Access-Control-Allow-Origin" not in narrow.get("/ping", headers={"Origin": origin}).headers
    assert "Access-Control-Allow-Methods" not in preflight(narrow, origin).headers


def test_an_origin_in_capitals_is_the_same_origin(narrow):
    # Scheme and host are case-insensitive (RFC 4343): the browser's spelling is echoed back.
    answer = narrow.get("/ping", headers={"Origin": "HTTPS://LAB.EXAMPLE"})
    assert answer.headers["Access-Control-Allow-Origin"] == "HTTPS://LAB.EXAMPLE"


@pytest.mark.parametrize(
    "setting", ["https://*.lab.example", "https://lab.example/page", "^https://lab", "lab.example"]
)
def test_a_pattern_or_a_url_in_cors_origins_refuses_to_start(setting):
    with pytest.raises(ConfigError, match=r"CORS_ORIGINS: .* is not an origin"):
        Settings.from_env({"CORS_ORIGINS": f"http://localhost:8080, {setting}"})


@pytest.mark.parametrize("fixture", ["narrow", "single"])
def test_a_narrowed_list_varies_on_origin_allowed_or_refused(request, fixture):
    client = request.getfixturevalue(fixture)
    for origin in (LAB, "https://evil.example"):
        assert "Origin" in client.get("/ping", headers={"Origin": origin}).headers.get("Vary", "")


def test_the_wildcard_is_sent_as_such_and_exposes_the_answer_headers(fake_client):
    answer = fake_client.get("/ping", headers={"Origin": LAB})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"  # never the caller's origin echoed
    assert set(answer.headers["Access-Control-Expose-Headers"].replace(" ", "").split(",")) == {
        "X-Stat",
        "X-Request-ID",
    }
    assert "Access-Control-Allow-Credentials" not in answer.headers


def test_a_preflight_allows_what_the_api_reads_and_nothing_else(fake_client):
    answer = preflight(fake_client, LAB, **{"Access-Control-Request-Headers": "X-API-Key, X-Evil, Authorization"})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Headers"] == "Authorization, X-API-Key"
    assert set(answer.headers["Access-Control-Allow-Methods"].replace(" ", "").split(",")) == {"GET", "POST", "OPTIONS"}
    assert answer.headers["Access-Control-Max-Age"] == "600"
    assert (
        "Access-Control-Allow-Methods"
        not in preflight(fake_client, LAB, **{"Access-Control-Request-Method": "PUT"}).headers
    )


def test_a_private_network_preflight_is_not_granted(fake_client):
    # CVE-2024-6221: a page on the internet asking to reach a service on a lab's private network.
    answer = preflight(fake_client, LAB, **{"Access-Control-Request-Private-Network": "true"})
    assert answer.headers.get("Access-Control-Allow-Private-Network", "false") == "false"


def test_a_path_made_to_forge_log_lines_stays_one_record(fake_client, caplog):
    # CVE-2024-1681: flask-cors logged the raw path; a CR LF in it wrote a line of the caller's.
    with caplog.at_level(logging.DEBUG, logger="flask_cors"):
        fake_client.get("/ping%0d%0a2026-01-01 [1] [INFO] forged: admin logged in", headers={"Origin": LAB})
    logged = [record.getMessage() for record in caplog.records if record.name.startswith("flask_cors")]
    assert logged and all("\n" not in message and "\r" not in message for message in logged)


def test_error_answers_carry_cors_too(narrow):
    answer = narrow.post("/invocations", data=b"not a photo", content_type="image/jpeg", headers={"Origin": LAB})
    assert answer.status_code == 400 and answer.headers["Access-Control-Allow-Origin"] == LAB
    refused = narrow.delete("/invocations", headers={"Origin": LAB})
    assert refused.status_code == 405 and "POST" in refused.headers["Allow"]
    assert refused.headers["Access-Control-Allow-Origin"] == LAB
