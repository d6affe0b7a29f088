"""One reading of the API key headers (app/api_keys.py) for the app, admission and
the nginx front's pre-check: the patterns nginx is given accept every header the app
accepts, for any key (symbols, quotes, UTF-8) and any Basic user name, and refuse
headers that carry no key. nginx's PCRE is stood in for by Python's re on the same
pattern text: the patterns use only what both read alike (\\xHH, classes, (?i:))."""

from __future__ import annotations

import base64
import re

import pytest
from fakes import fake_app
from hypothesis import given, settings
from hypothesis import strategies as st

from app import api_keys
from app.api_keys import (
    authorization_patterns,
    matching_key,
    open_route_pattern,
    presented_keys,
    x_api_key_patterns,
)
from app.serve.front import FrontSettings, render_config
from app.serve.front_maps import SERVED_METHODS

KEYS = ("lab-key-1", "S3cret!Key#2026", "q\"uo'te;{x}$y\\z", "a:b", "ключ")


def as_nginx_reads(pattern: str) -> re.Pattern:
    """The pattern as nginx hands it to PCRE (in a quoted config string, \\t is a tab),
    on headers as bytes read as latin-1: PCRE without UTF mode sees bytes."""
    return re.compile(pattern.replace("\\t", "\t"), re.ASCII)


def front_accepts(key: str, authorization: str | None = None, x_api_key: str | None = None) -> bool:
    def matches(patterns, value):
        return value is not None and any(as_nginx_reads(p).search(value) for p in patterns)

    return matches(authorization_patterns(key), authorization) or matches(x_api_key_patterns(key), x_api_key)


def app_accepts(key: str, authorization: str | None = None, x_api_key: str | None = None) -> bool:
    return matching_key(presented_keys(authorization, x_api_key), (key,)) == key


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


def header(text: str) -> str:
    """A key as the servers hand a header over: its UTF-8 bytes read as latin-1."""
    return text.encode().decode("latin-1")


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("user", [b"", b"k", b"ke", b"key", b"label-studio", b"\xff\x00x"])
def test_basic_with_the_key_as_password_is_accepted_by_both_for_any_user_name(key, user):
    value = basic(user, key.encode())
    assert app_accepts(key, authorization=value)
    assert front_accepts(key, authorization=value)


@pytest.mark.parametrize("key", KEYS)
def test_bearer_and_x_api_key_are_accepted_by_both(key):
    for form in ({"authorization": header(f"Bearer {key}")}, {"authorization": header(f"bearer\t{key} ")}):
        assert app_accepts(key, **form) and front_accepts(key, **form)
    assert app_accepts(key, x_api_key=header(key)) and front_accepts(key, x_api_key=header(key))


@pytest.mark.parametrize("key", KEYS)
def test_near_misses_are_refused_by_both(key):
    misses = [
        {"authorization": header(f"Bearer {key}x")},
        {"authorization": header(f"Bearer x{key}")},
        {"authorization": header(f"Token {key}")},
        {"authorization": basic(b"user", key.encode() + b"x")},
        {"authorization": basic(b"user", b"x" + key.encode())},
        {"authorization": basic(key.encode(), b"")},  # the key as user name, no password
        {"authorization": header(f"Basic {key}")},
        {"x_api_key": header(key.upper() if key.upper() != key else key + "!")},
        {"x_api_key": header(f"Bearer {key}")},
    ]
    for miss in misses:
        assert not app_accepts(key, **miss), miss
        assert not front_accepts(key, **miss), miss


def test_a_user_name_with_a_colon_is_the_one_case_the_front_lets_through_and_the_app_refuses():
    """RFC 7617: the password follows the first colon. nginx cannot decode, so it lets
    this one through to the app, which refuses it after the body; only a key holder can."""
    value = basic(b"a:b", b"lab-key-1")
    assert front_accepts("lab-key-1", authorization=value)
    assert not app_accepts("lab-key-1", authorization=value)


@settings(max_examples=300, deadline=None)
@given(
    key=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters=","), min_size=1, max_size=24),
    user=st.binary(max_size=12).filter(lambda user: b":" not in user),
)
def test_the_front_never_refuses_a_header_the_app_accepts(key, user):
    authorization = basic(user, key.encode())
    assert app_accepts(key, authorization=authorization)
    assert front_accepts(key, authorization=authorization)


@settings(max_examples=300, deadline=None)
@given(key=st.text(min_size=1, max_size=16), value=st.text(st.characters(max_codepoint=255), max_size=40))
def test_what_the_front_refuses_the_app_refuses_too(key, value):
    for form in ({"authorization": value}, {"x_api_key": value}, {"authorization": "Basic " + value}):
        if not front_accepts(key, **form):
            assert not app_accepts(key, **form)


def test_the_open_paths_are_the_open_endpoints_routes(tmp_path):
    """The front's list of routes that need no key names the app's open endpoints' rules."""
    app = fake_app(tmp_path, api_keys=("k",))
    open_rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint in api_keys.OPEN_ENDPOINTS}
    pattern = re.compile(open_route_pattern())
    for rule in open_rules:
        path = rule.replace("<path:filename>", "app.js")
        assert pattern.search(f"GET {path}") and pattern.search(f"HEAD {path}"), rule
        assert not pattern.search(f"POST {path}")
    guarded = {rule.rule for rule in app.url_map.iter_rules()} - open_rules
    assert guarded and not any(pattern.search(f"GET {rule}") for rule in guarded)


def test_the_upload_paths_are_the_post_only_routes(tmp_path):
    app = fake_app(tmp_path)
    post_only = {rule.rule for rule in app.url_map.iter_rules() if rule.methods - {"OPTIONS", "HEAD"} == {"POST"}}
    assert post_only == set(api_keys.UPLOAD_PATHS)
    served = set().union(*(rule.methods for rule in app.url_map.iter_rules()))
    assert served == set(SERVED_METHODS)


def test_any_key_keeps_the_pre_check_on(tmp_path):
    """A key with symbols (`#`, `!`) once switched the pre-check off for every key."""
    front = FrontSettings(
        port=8080, host="127.0.0.1", directory=tmp_path, max_body_mb=50, upstream_timeout_s=90, cors_any_origin=True,
        api_keys=KEYS,
    )  # fmt: skip
    config = render_config(front)
    assert '"~." 1' not in config
    assert config.count('$refused_key { "" 1;') == 1
    for line in config.splitlines():  # every key's pattern a literal nginx reads as written
        if line.strip().startswith('"~^') and line.endswith('" 1;'):
            pattern = line.strip()[1:-4]
            assert '"' not in pattern and ";" not in pattern and "$" not in pattern[:-1] and "'" not in pattern
