"""The API document: valid OpenAPI 3.1, and the live server keeps to it."""

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

from app.http import openapi, parameters
from app.http.errors import BadRequest
from app.http.openapi import ERROR_CODES, openapi_document
from app.http.parameters import PARAMETERS, Boolean, Choice, Fraction, Parameter, read_parameters
from app.pipeline.render import MEDIA_TYPES


def test_the_document_is_valid_openapi_3_1(fake_client):
    document = fake_client.get("/openapi.json").get_json()
    validate(document)
    assert document == openapi_document()
    invocations = document["paths"]["/invocations"]["post"]
    assert {"application/json", "multipart/form-data", "image/jpeg"} <= set(invocations["requestBody"]["content"])
    assert set(ERROR_CODES) - {"404", "405"} <= set(invocations["responses"])
    threshold = next(p for p in invocations["parameters"] if p["name"] == "threshold")["schema"]
    assert (threshold["minimum"], threshold["maximum"]) == (0, 1)


def documented_parameters() -> tuple[dict, dict, dict]:
    """The schema of each parameter as a query parameter, a JSON key and a form field."""
    document = openapi_document()
    schemas = document["components"]["schemas"]
    query = {p["name"]: p["schema"] for p in document["paths"]["/invocations"]["post"]["parameters"]}
    body = {name: s for name, s in schemas["JsonInvocation"]["properties"].items() if name != "image"}
    form = {name: s for name, s in schemas["FormInvocation"]["properties"].items() if name != "image"}
    return query, body, form


def test_the_parameters_documented_are_the_table_with_its_defaults_enums_and_bounds():
    query, body, form = documented_parameters()
    assert list(query) == list(body) == list(form) == [parameter.name for parameter in PARAMETERS]
    for parameter in PARAMETERS:
        name, kind = parameter.name, parameter.kind
        as_json, as_text = body[name], query[name]
        assert form[name] == as_text and as_json["description"] == as_text["description"] == parameter.description
        assert as_json.get("default") == parameter.default
        if parameter.default is not None:  # the default as text reads back as the default
            assert read_parameters({name: as_text["default"]}, ("dog",))[name] == parameter.default
        if isinstance(kind, Fraction):
            assert all((s["minimum"], s["maximum"]) == (0, 1) for s in (as_json, as_text))
        if isinstance(kind, Choice):
            assert as_json["enum"] == as_text["enum"] == list(kind.words)
        if isinstance(kind, Boolean):
            assert as_json["type"] == "boolean"
            assert {read_parameters({name: word}, ("dog",))[name] for word in as_text["enum"]} == {True, False}


def test_a_parameter_added_to_the_table_is_documented_and_read(monkeypatch):
    colour = Parameter("colour", Choice(("red", "blue")), "red", "The pen's colour")
    monkeypatch.setattr(parameters, "PARAMETERS", (*PARAMETERS, colour))
    monkeypatch.setattr(openapi, "PARAMETERS", parameters.PARAMETERS)  # the one name openapi.py imports
    for documented in documented_parameters():
        assert documented["colour"]["enum"] == ["red", "blue"] and documented["colour"]["default"] == "red"
    validate(openapi_document())
    assert read_parameters({}, ("dog",))["colour"] == "red"
    with pytest.raises(BadRequest, match="'colour' must be one of red, blue, got 'green'"):
        read_parameters({"colour": "green"}, ("dog",))


def test_format_and_the_answers_media_types_are_documented():
    invocations = openapi_document()["paths"]["/invocations"]["post"]
    answer = invocations["responses"]["200"]
    assert (
        set(answer["content"])
        == set(MEDIA_TYPES.values())
        == {
            "application/json",
            "image/jpeg",
            "text/csv",
            "application/x-ndjson",
        }
    )
    assert {"$ref": "#/components/schemas/CocoDataset"} in answer["content"]["application/json"]["schema"]["oneOf"]
    assert "X-Stat" in answer["headers"]
    query_format = next(p for p in invocations["parameters"] if p["name"] == "format")
    assert query_format["schema"]["enum"] == list(MEDIA_TYPES)
    assert "default" not in query_format["schema"]  # none: the Accept header chooses
    assert "Accept header" in query_format["description"]
    assert all(media in query_format["description"] for media in set(MEDIA_TYPES.values()))


def test_schemathesis_finds_no_500_and_no_answer_outside_the_document(live_server):
    assert requests.get(f"{live_server.url}/openapi.json", timeout=5).ok
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{live_server.url}/openapi.json",
            "--checks",
            "all",
            # "Schema-valid data must be accepted" cannot hold here: no schema can say
            # "a decodable photo", so a valid base64 string of noise is rightly a 400.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "60",
            "--seed",
            "20261124",
            "--request-timeout",
            "60",
            "--generation-database",
            "none",  # nothing written into the checkout
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


# Routes that are no API: the page and its files, and /ping's documented alias.
NOT_API = {
    "/": "the web page (HTML)",
    "/favicon.ico": "the page's icon",
    "/static/<path:filename>": "the page's scripts and styles",
    "/ping/": "/ping with a slash, as the original documented it; the same answer",
}


def test_every_route_is_in_the_document_or_excluded_with_a_reason(fake_app):
    documented = openapi_document()["paths"]
    for rule in fake_app.url_map.iter_rules():
        if rule.rule in NOT_API:
            continue
        assert rule.rule in documented, f"{rule.rule} is served but not in /openapi.json"
        methods = {method.lower() for method in rule.methods - {"HEAD", "OPTIONS"}}
        assert methods <= set(documented[rule.rule]), f"{rule.rule}: {methods} not all documented"
    served = {rule.rule for rule in fake_app.url_map.iter_rules()}
    assert set(documented) <= served, "documented but not served"
