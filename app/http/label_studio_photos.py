"""Fetching a Label Studio task's photo: from the Label Studio host with its token, or
from an http(s) URL on a host the operator allows. Never an open fetcher: a predict
request names URLs, and the service must not fetch whatever a caller names (an internal
address, a cloud metadata endpoint) nor send the token anywhere but to Label Studio:
each URL is read by the HTTP client's own parser, and what it reads is what is checked
and what is sent (settings.http_url; urlsplit once read `http://a:1\\@b/` as host b
while urllib3 connected to a, with the token).

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
import logging
import threading
import time
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urljoin

import requests

from app.settings import HttpUrl, Origin, http_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
PHOTO_TIMEOUT_S = 30.0  # the most one photo's download may take, within the request's deadline
REFRESH_MARGIN_S = 30.0  # an access token is refreshed this long before it expires
CHUNK_BYTES = 256 * 1024


class PhotoFetchError(Exception):
    """A task's photo could not be fetched; the message says why and what to set."""


class FetchPastDeadline(PhotoFetchError):
    """The request's time ran out while (or before) the photo was fetched."""


class SetupRefused(ValueError):
    """What /setup says about Label Studio cannot be taken; the message says why."""


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


def _expiry(claims: dict, default: float) -> float:
    expires = claims.get("exp")
    return float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else default


class LabelStudioToken:
    """The header that opens Label Studio's files to this service."""

    def __init__(self, key: str):
        self.key = key.strip()
        claims = _jwt_claims(self.key)
        if claims is None:
            self.kind = "legacy"
        else:
            self.kind = "refresh" if claims.get("token_type") == "refresh" else "access"
        self._access: str | None = self.key if self.kind == "access" else None
        self._expires = _expiry(claims, 0.0) if claims and self.kind == "access" else 0.0
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
            # Not redirected: a 307 would carry the refresh token to wherever it points.
            response = session.post(
                url, json={"refresh": self.key}, timeout=(CONNECT_TIMEOUT_S, 15), allow_redirects=False
            )
        except requests.RequestException as exc:
            raise PhotoFetchError(f"cannot reach Label Studio at {base_url} to refresh its token: {exc}") from None
        if response.status_code != 200:
            raise PhotoFetchError(
                f"Label Studio refused to refresh the personal access token (HTTP {response.status_code}): "
                "make a new one under Account & Settings and set LABEL_STUDIO_API_KEY"
            )
        try:
            access = response.json().get("access", "")
        except (ValueError, AttributeError):
            access = ""
        if not isinstance(access, str) or not access:
            raise PhotoFetchError(f"Label Studio at {base_url} answered the token refresh without an access token")
        self._access = access
        self._expires = _expiry(_jwt_claims(access) or {}, time.time() + 60)


def _base(studio: HttpUrl) -> tuple[HttpUrl, str]:
    """Label Studio's URL read, and as /data/upload/... paths are put after it."""
    return studio, studio.url.rstrip("/")


class LabelStudioLink:
    """Where a task's photos are fetched from: Label Studio's URL and token (the
    settings', else what Label Studio said at /setup) and the hosts the operator allows.

    Every URL is read once, by the HTTP client's own parser (settings.http_url), and the
    request sent is the one read: the token goes to Label Studio's exact origin (scheme,
    host, port) and nowhere else, no redirect is followed, no cookie is kept."""

    def __init__(
        self,
        url: str = "",
        token: LabelStudioToken | None = None,
        allowed_hosts: frozenset[str] = frozenset(),
        max_bytes: int = 50 * 1024 * 1024,
    ):
        self.allowed_hosts = allowed_hosts
        self.max_bytes = max_bytes
        # Label Studio's base URL: the settings', else the first /setup's.
        self._configured = _base(http_url(url)) if url else None
        self._learned: tuple[HttpUrl, str] | None = None
        self._configured_token = token
        self._learned_token: LabelStudioToken | None = None  # from a /setup that named Label Studio's origin
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy or .netrc from the environment between us and Label Studio
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # a cookie would cross ports

    @property
    def url(self) -> str:
        """Label Studio's base URL, for /data/upload/... paths ("" while none is known)."""
        studio = self._configured or self._learned
        return studio[1] if studio else ""

    @property
    def origin(self) -> Origin | None:
        """Label Studio's origin: the only one the token is sent to."""
        studio = self._configured or self._learned
        return studio[0].origin if studio else None

    @property
    def token(self) -> LabelStudioToken | None:
        return self._configured_token or self._learned_token

    def learn(self, hostname: str, access_token: str) -> None:
        """What /setup says, where the settings say nothing. Label Studio's URL only on a
        host the operator allows (LABEL_STUDIO_HOSTS), and only the first: a later /setup
        cannot move the fetches (SetupRefused). Its token only with that origin (or with
        LABEL_STUDIO_URL), replaced by the next such /setup (Label Studio sends one before
        every batch, so a wrong one does not stick), never replacing LABEL_STUDIO_API_KEY.
        Kept by this worker only: with several workers, set LABEL_STUDIO_URL and _API_KEY."""
        with self._lock:
            names_studio = self._configured is not None
            if self._configured is None and hostname:
                named = self._named(hostname)
                if not self._allows(named.origin):
                    log.warning("label studio /setup names %s, not in LABEL_STUDIO_HOSTS: not used", named.origin)
                elif self._learned is None:
                    self._learned, names_studio = _base(named), True
                elif named.origin != self._learned[0].origin:
                    raise SetupRefused(
                        f"this service fetches Label Studio's photos from {self._learned[0].origin}, the first that "
                        f"connected, not from {named.origin}: set LABEL_STUDIO_URL to the one to use"
                    )
                else:
                    names_studio = True
            known = self._learned_token
            if (
                self._configured_token is None
                and access_token
                and names_studio
                and (not known or known.key != access_token)
            ):
                self._learned_token = LabelStudioToken(access_token)  # the same one again keeps its access token

    @staticmethod
    def _named(hostname: str) -> HttpUrl:
        try:
            named = http_url(hostname)
        except ValueError as exc:
            raise SetupRefused(f"'hostname' {hostname[:200]!r}: {exc}") from None
        if "?" in hostname or "#" in hostname:
            raise SetupRefused(f"'hostname' {hostname[:200]!r}: Label Studio's base URL, without query or fragment")
        return named

    def fetch(self, url: str, deadline: float) -> bytes:
        """The photo's bytes; PhotoFetchError says why not. deadline: time.monotonic()."""
        target = self._checked(url)
        to_label_studio = target.origin == self.origin
        token = self.token if to_label_studio else None
        response = self._get(target, token, deadline)
        if response.status_code in (401, 403) and token and token.kind == "refresh":
            response.close()
            response = self._get(target, token, deadline, force_refresh=True)
        with response:
            if response.status_code != 200:
                hint = ""
                if 300 <= response.status_code < 400:
                    hint = " (a redirect: none is followed, the photo must be at the task's URL)"
                elif to_label_studio:
                    hint = " (set LABEL_STUDIO_API_KEY to a token of a user of this project)"
                raise PhotoFetchError(f"{url[:200]}: HTTP {response.status_code}{hint}")
            return self._body(url, response, deadline)

    def _checked(self, url: str) -> HttpUrl:
        """The task's URL as the HTTP client reads it, on an allowed host."""
        if not isinstance(url, str) or not url:
            raise PhotoFetchError("the task has no photo URL in its data")
        if url.startswith("/") and not url.startswith("//"):
            if not self.url:
                raise PhotoFetchError(
                    f"{url[:200]} is a Label Studio path: set LABEL_STUDIO_URL (or connect the model from Label Studio "
                    "so that /setup says its host)"
                )
            url = self.url + url
        try:
            target = http_url(url)
        except ValueError as exc:
            scope = (
                ""
                if "not allowed" in str(exc)
                else "; only http(s) URLs and Label Studio's /data/... paths are fetched"
            )
            raise PhotoFetchError(f"{url[:200]}: {exc}{scope}") from None
        if not self._allows(target.origin):
            raise PhotoFetchError(
                f"{url[:200]}: the host {target.origin.host}:{target.origin.port} is not allowed; add it to "
                "LABEL_STUDIO_HOSTS to fetch photos from it"
            )
        return target

    def _allows(self, origin: Origin) -> bool:
        # An entry is host:port, or a host (any port of it); Label Studio's own origin always is.
        hosts = self.allowed_hosts
        return origin == self.origin or f"{origin.host}:{origin.port}" in hosts or origin.host in hosts

    def _get(self, target: HttpUrl, token: LabelStudioToken | None, deadline: float, force_refresh: bool = False):
        # What is sent is the URL checked: prepared once more, it must read the same.
        request = self._session.prepare_request(requests.Request("GET", target.url))
        if request.url != target.url:
            raise PhotoFetchError(f"{target.url[:200]}: the URL does not read the same twice; not fetched")
        if token:
            request.headers.update(token.header(self.url, self._session, force_refresh))
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchPastDeadline(f"{target.url[:200]}: no time left to fetch it within the request's deadline")
        try:
            # No redirect is followed: it could lead to another origin, with the token or to a host not allowed.
            return self._session.send(
                request,
                stream=True,
                allow_redirects=False,
                timeout=(min(CONNECT_TIMEOUT_S, left), min(PHOTO_TIMEOUT_S, left)),
            )
        except requests.Timeout:
            if left < PHOTO_TIMEOUT_S:  # the request's deadline cut the wait short, not the photo's own limit
                raise FetchPastDeadline(
                    f"{target.url[:200]}: no time left to fetch it within the request's deadline"
                ) from None
            raise PhotoFetchError(f"{target.url[:200]}: no answer within {PHOTO_TIMEOUT_S:g} s") from None
        except requests.RequestException as exc:
            raise PhotoFetchError(f"{target.url[:200]}: cannot fetch it: {exc.__class__.__name__}") from None

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
