"""Which header forms carry an API key, in one place: the app's check (auth.py), the
fair share of a keyed client (admission.py) and the nginx front's pre-check (front.py,
which renders its patterns from the forms below) all read a key the same way.

A request carries a key when one of these is a configured key, byte for byte:
- `Authorization: Bearer <key>` (the scheme in any case);
- `Authorization: Basic <base64 of user:key>`, any user name, what Label Studio's ML
  backend form sends (RFC 7617: the password is what follows the first colon);
- `X-API-Key: <key>`.

nginx cannot decode base64, so its pattern for Basic is the base64 of `:key` at each of
the three alignments a user name can leave it at (see basic_patterns): any user name,
no enumeration. It accepts every header the app accepts (never stricter, a test holds
it to that); it may accept a little more (a user name with a colon in it), which the
app then refuses after the body: only someone who knows a key can send that.
No Flask here: the front's config is written by the supervisor, which never imports it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re

AUTHORIZATION = "Authorization"
X_API_KEY = "X-API-Key"

BEARER = re.compile(r"(?i:bearer)[ \t]+(.*?)[ \t]*", re.DOTALL | re.ASCII)
BASIC = re.compile(r"(?i:basic)[ \t]+([A-Za-z0-9+/]*={0,2})[ \t]*", re.ASCII)
B64 = "[A-Za-z0-9+/]"
# The routes that need no key (auth.py), by endpoint for the app, by path for the front;
# a test checks the two lists name the same routes. GET (and HEAD) only: none takes a body.
OPEN_ENDPOINTS = frozenset({"service.ping", "service.openapi", "service.index", "service.favicon", "static"})
OPEN_PATHS = ("/", "/favicon.ico", "/ping", "/ping/", "/openapi.json")
OPEN_PATH_PREFIXES = ("/static/",)
# The routes that take POST only, the photos' (and Label Studio's) doors: a GET or HEAD of
# one that announces a body is the app's 405, answered by the front from the head.
UPLOAD_PATHS = ("/invocations", "/upload", "/label-studio/setup", "/label-studio/predict", "/label-studio/webhook")
NO_KEY = (
    "this service needs an API key: send 'Authorization: Bearer <key>', 'X-API-Key: <key>' "
    "or basic auth with the key as password"
)


def presented_keys(authorization: str | None, x_api_key: str | None) -> list[bytes]:
    """What a request offers as a key, from its two headers as the server decoded them
    (latin-1, as WSGI and nginx see bytes): the Bearer token or the Basic password, and
    the X-API-Key value."""
    offered = []
    if authorization:
        if bearer := BEARER.fullmatch(authorization):
            offered.append(bearer.group(1).encode("latin-1"))
        elif (basic := BASIC.fullmatch(authorization)) and (password := _basic_password(basic.group(1))) is not None:
            offered.append(password)
    if x_api_key:
        offered.append(x_api_key.encode("latin-1"))
    return [key for key in offered if key]


def _basic_password(token: str) -> bytes | None:
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(decoded).decode() != token:  # non-canonical padding bits: as nginx, refused
        return None
    _user, colon, password = decoded.partition(b":")
    return password if colon else None


def matching_key(offered: list[bytes], api_keys: tuple[str, ...]) -> str | None:
    """The configured key one of `offered` is, compared in constant time with every key
    (the timing tells nothing of how close a guess came)."""
    found = None
    for key in api_keys:
        encoded = key.encode("utf-8")
        for candidate in offered:
            if hmac.compare_digest(candidate, encoded):
                found = key
    return found


# -- the front's patterns (PCRE, as nginx's map reads them) -------------------------------


def escaped(text: bytes) -> str:
    """Every byte but letters and digits as \\xHH: a key of any characters (`#`, `;`, a
    quote, a brace, UTF-8) is a literal in PCRE and needs no escaping in nginx's config."""
    return "".join(chr(byte) if chr(byte).isascii() and chr(byte).isalnum() else f"\\x{byte:02X}" for byte in text)


def x_api_key_patterns(key: str) -> list[str]:
    return [f"^{escaped(key.encode())}$"]


def authorization_patterns(key: str) -> list[str]:
    bearer = f"^(?i:bearer)[ \\t]+{escaped(key.encode())}[ \\t]*$"
    return [bearer, *(f"^(?i:basic)[ \\t]+{pattern}[ \\t]*$" for pattern in basic_patterns(key))]


def basic_patterns(key: str) -> list[str]:
    """base64(user + ":" + key) for every user name. Base64 encodes 3 bytes as 4
    characters, so what encodes `:key` depends only on the user name's length mod 3:
    - length 0 mod 3: `:` starts a group, the text ends in base64(":" + key);
    - length 1 mod 3: the user's last byte u, then `:` and the key's first byte make a
      group: its first character is u's, its second u's low 2 bits and `:`'s high 4
      (D, T, j or z), the rest is fixed;
    - length 2 mod 3: `:` ends a group (its last character `6`, the one before has low
      bits 0), then base64(key) from a group boundary.
    The user name's own groups are any base64 characters, four at a time."""
    raw = key.encode()
    groups = f"(?:{B64}{{4}})*"
    after_user_0 = base64.b64encode(b":" + raw)
    after_user_1 = base64.b64encode(b"\0:" + raw)[2:]
    after_user_2 = base64.b64encode(raw)
    return [
        groups + escaped(after_user_0),
        groups + f"{B64}[DTjz]" + escaped(after_user_1),
        groups + f"{B64}{{2}}[AEIMQUYcgkosw048]6" + escaped(after_user_2),
    ]


def upload_paths_pattern() -> str:
    return "(" + "|".join(re.escape(path) for path in UPLOAD_PATHS) + ")"


def open_route_pattern() -> str:
    """GET or HEAD of an open path, as `METHOD PATH` (nginx's normalised $uri)."""
    paths = "|".join(re.escape(path) for path in OPEN_PATHS)
    prefixes = "|".join(re.escape(prefix) + ".*" for prefix in OPEN_PATH_PREFIXES)
    return f"^(GET|HEAD) ({paths}|{prefixes})$"
