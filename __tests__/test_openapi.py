"""The API document: valid OpenAPI 3.1, and the live server keeps to it."""

import subprocess
import sys
from pathlib import Path

import requests
from openapi_spec_validator import validate

from app.http.openapi import ERROR_CODES, openapi_document


def test_the_document_is_valid_openapi_3_1(client):
    document = client.get("/openapi.json").get_json()
    validate(document)
    assert document == openapi_document()
    invocations = document["paths"]["/invocations"]["post"]
    assert {"application/json", "multipart/form-data", "image/jpeg"} <= set(invocations["requestBody"]["content"])
    assert set(ERROR_CODES) - {"404", "405"} <= set(invocations["responses"])
    threshold = next(p for p in invocations["parameters"] if p["name"] == "threshold")["schema"]
    assert (threshold["minimum"], threshold["maximum"]) == (0, 1)


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
