"""Fetching a Label Studio task's photo: from the Label Studio host with its token, or
from an http(s) URL on a host the operator allows. Never an open fetcher: a predict
request names URLs, and the service must not fetch whatever a caller names (an internal
address, a cloud metadata endpoint) nor send the token anywhere but to Label Studio.

Tokens (Label Studio 1.23 turns legacy tokens off for new organisations):
- a personal access token is a JWT refresh token: POST /api/token/refresh/ {"refresh"}
  gives a short-lived access token, sent as `Authorization: Bearer`; refreshed before it
  expires and once more on a 401;
- a legacy token is sent as `Authorization: Token`.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

CONNECT_TIMEOUT_S = 5.0
PHOTO_TIMEOUT_S = 30.0  # the most one photo's download may take, within the request's deadline
REFRESH_MARGIN_S = 30.0  # an access token is refreshed this long before it expires
CHUNK_BYTES = 256 * 1024


class PhotoFetchError(Exception):
    """A task's photo could not be fetched; the message says why and what to set."""


class FetchPastDeadline(PhotoFetchError):
    """The request's time ran out while (or before) the photo was fetched."""


def host_of(url: str) -> str:
    """`host[:port]` of an http(s) URL, lower case; the port only where the URL has one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return parts.hostname + (f":{parts.port}" if parts.port else "")


def _jwt_claims(token: str) -> dict | None:
    """A JWT's payload, unverified (Label Studio verifies it); None for a legacy token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


class LabelStudioToken:
    """The header that opens Label Studio's files to this service."""

    def __init__(self, key: str):
        self.key = key.strip()
        claims = _jwt_claims(self.key)
        self.kind = "legacy" if claims is None else claims.get("token_type", "access")
        self._access: str | None = self.key if self.kind == "access" else None
        self._expires = float(claims.get("exp", 0)) if claims and self.kind == "access" else 0.0
        self._lock = threading.Lock()  # request threads share it: one refresh at a time

    def header(self, base_url: str, session: requests.Session, force_refresh: bool = False) -> dict[str, str]:
        if self.kind == "legacy":
            return {"Authorization": f"Token {self.key}"}
        if self.kind == "refresh":
            with self._lock:
                if force_refresh or not self._access or time.time() > self._expires - REFRESH_MARGIN_S:
                    self._refresh(base_url, session)
        return {"Authorization": f"Bearer {self._access}"}

    def _refresh(self, base_url: str, session: requests.Session) -> None:
        url = urljoin(base_url.rstrip("/") + "/", "api/token/refresh/")
        try:
            response = session.post(url, json={"refresh": self.key}, timeout=(CONNECT_TIMEOUT_S, 15))
        except requests.RequestException as exc:
            raise PhotoFetchError(f"cannot reach Label Studio at {base_url} to refresh its token: {exc}") from None
        if response.status_code != 200:
            raise PhotoFetchError(
                f"Label Studio refused to refresh the personal access token (HTTP {response.status_code}): "
                "make a new one under Account & Settings and set LABEL_STUDIO_API_KEY"
            )
        access = response.json().get("access", "")
        claims = _jwt_claims(access) or {}
        self._access = access
        self._expires = float(claims.get("exp", time.time() + 60))


@dataclass
class LabelStudioLink:
    """Where a task's photos are fetched from: Label Studio's URL and token (the
    settings', else what Label Studio said at /setup) and the hosts the operator allows."""

    url: str = ""  # Label Studio's base URL, for /data/upload/... paths
    token: LabelStudioToken | None = None
    allowed_hosts: frozenset[str] = frozenset()
    max_bytes: int = 50 * 1024 * 1024

    def __post_init__(self):
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy from the environment between us and Label Studio

    def fetch(self, url: str, deadline: float) -> bytes:
        """The photo's bytes; PhotoFetchError says why not. deadline: time.monotonic()."""
        absolute = self._absolute(url)
        to_label_studio = bool(self.url) and host_of(absolute) == host_of(self.url)
        response = self._get(absolute, to_label_studio, deadline)
        if response.status_code in (401, 403) and to_label_studio and self.token and self.token.kind == "refresh":
            response.close()
            response = self._get(absolute, to_label_studio, deadline, force_refresh=True)
        with response:
            if response.status_code != 200:
                hint = " (set LABEL_STUDIO_API_KEY to a token of a user of this project)" if to_label_studio else ""
                raise PhotoFetchError(f"{url}: HTTP {response.status_code}{hint}")
            return self._body(url, response, deadline)

    def _absolute(self, url: str) -> str:
        if not isinstance(url, str) or not url:
            raise PhotoFetchError("the task has no photo URL in its data")
        if url.startswith("/") and not url.startswith("//"):
            if not self.url:
                raise PhotoFetchError(
                    f"{url} is a Label Studio path: set LABEL_STUDIO_URL (or connect the model from Label Studio "
                    "so that /setup says its host)"
                )
            url = self.url.rstrip("/") + url
        try:
            host = host_of(url)
        except ValueError:
            raise PhotoFetchError(
                f"{url[:200]}: only http(s) URLs and Label Studio's own /data/... paths are fetched"
            ) from None
        if host not in self.allowed_hosts and urlsplit(url).hostname not in self.allowed_hosts:
            raise PhotoFetchError(
                f"{url[:200]}: the host {host} is not allowed; add it to LABEL_STUDIO_HOSTS to fetch photos from it"
            )
        return url

    def _get(self, url: str, to_label_studio: bool, deadline: float, force_refresh: bool = False):
        headers = {}
        if to_label_studio and self.token:
            headers = self.token.header(self.url, self._session, force_refresh)
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchPastDeadline(f"{url}: no time left to fetch it within the request's deadline")
        try:
            # No redirects: one could lead to a host that is not allowed.
            return self._session.get(
                url,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(min(CONNECT_TIMEOUT_S, left), min(PHOTO_TIMEOUT_S, left)),
            )
        except requests.Timeout:
            if left < PHOTO_TIMEOUT_S:  # the request's deadline cut the wait short, not the photo's own limit
                raise FetchPastDeadline(f"{url}: no time left to fetch it within the request's deadline") from None
            raise PhotoFetchError(f"{url}: no answer within {PHOTO_TIMEOUT_S:g} s") from None
        except requests.RequestException as exc:
            raise PhotoFetchError(f"{url}: cannot fetch it: {exc.__class__.__name__}") from None

    def _body(self, url: str, response: requests.Response, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise PhotoFetchError(f"{url}: {int(declared)} bytes is over MAX_UPLOAD_MB")
        body = bytearray()
        for chunk in response.iter_content(CHUNK_BYTES):
            body += chunk
            if len(body) > self.max_bytes:
                raise PhotoFetchError(f"{url}: over MAX_UPLOAD_MB")
            if time.monotonic() > deadline:
                raise FetchPastDeadline(f"{url}: its download ran past the request's deadline")
        return bytes(body)
