"""The front's maps: who a request comes from (the real client behind a trusted proxy,
an IPv6 client by its /64), what one client and everyone may hold, whether it presents
a key (api_keys.py's forms) and may send a body, and the log line of what nginx answers
itself. front.py puts them in nginx's config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app import api_keys

if TYPE_CHECKING:
    from .front import Limits

FRONT_LOG_MARK = "front-request "  # the access log's lines, told apart from nginx's own by the supervisor
SERVED_METHODS = ("GET", "HEAD", "POST", "OPTIONS")  # what the routes take: others get a 405 from the head
UPLOAD_METHODS = ("POST",)  # the only one that carries a body: the others get a 413 from the head


def real_ip(trusted_proxies: tuple[str, ...]) -> str:
    """Behind trusted proxies, $remote_addr (and every limit, the log, X-Forwarded-For to
    the app) is the client's: the right-most address of X-Forwarded-For that is not one of them."""
    if not trusted_proxies:
        return "    # No TRUSTED_PROXIES: X-Forwarded-For from clients is ignored."
    sources = "\n".join(f"    set_real_ip_from {network};" for network in trusted_proxies)
    return f"    real_ip_header X-Forwarded-For;\n    real_ip_recursive on;\n{sources}"


def access_log() -> str:
    """A line for each request nginx answers itself (a refusal, 429, 413, its 503s): the
    app logs the others. The supervisor relays it as a request line (relay_nginx_line)."""
    fields = ", ".join(
        f'"{name}":"${variable}"'
        for name, variable in (
            ("request_id", "request_id_out"),
            ("client", "remote_addr"),
            ("method", "request_method"),
            ("path", "request_path"),
            ("status", "status"),
            ("bytes_in", "request_length"),
        )
    )
    # The path as sent, no query (as the app logs it): $uri is the error page's by then.
    return f"""    map $request_uri $request_path {{ "~^(?<path>[^?]*)" $path; default ""; }}
    log_format front escape=json '{FRONT_LOG_MARK}{{{fields}}}';
    map $upstream_status $answered_by_front {{ "" 1; "~^50[24]" 1; default ""; }}
    access_log /dev/stderr front if=$answered_by_front;"""


def client_limits(limits: Limits) -> str:
    """Limits per client: its address, or its IPv6 /64 (one host holds a whole /64)."""
    net64 = '"~^(?s)(?<net64>.{8}).{8}$" $net64;'
    return f"""    map $binary_remote_addr $client {{ {net64} default $binary_remote_addr; }}
    map $request_method $upload_client {{ {" ".join(f"{m} $client;" for m in UPLOAD_METHODS)} default ""; }}
    map $request_method $upload_any {{ {" ".join(f"{m} upload;" for m in UPLOAD_METHODS)} default ""; }}
    limit_conn_zone $client zone=client:4m;
    limit_conn_zone $upload_client zone=client_uploads:4m;
    limit_conn_zone $upload_any zone=uploads:1m;
    limit_conn client {limits.per_client};
    limit_conn client_uploads {limits.uploads_per_client};
    limit_conn uploads {limits.uploads_in_all};
    limit_conn_status 429;
    limit_conn_log_level warn;"""


def body_maps(max_body_mb: float) -> str:
    """$unserved_method: a method no route takes (405 from the head). $refused_body: a
    request other than a POST that announces a body (a length above 0, or any
    Transfer-Encoding): 405 for a GET or HEAD of a POST-only route (the app's answer to
    it, body or not), else 413. nginx's error_page turns the method into GET, so the
    location keeps the refused one in $refused_method for the 413's message, and the
    405's Allow in $allow_methods."""
    served = " ".join(f'{method} "";' for method in SERVED_METHODS)
    uploads = "|".join(UPLOAD_METHODS)
    return f"""    map $request_method $unserved_method {{ {served} default 1; }}
    map "$request_method:$http_content_length:$http_transfer_encoding" $announces_body {{
        "~^[^:]*:0*:$" "";
        default 1;
    }}
    map "$announces_body $request_method $uri" $refused_body {{
        "~^1 (GET|HEAD) {api_keys.upload_paths_pattern()}$" 405;
        "~^1 ({uploads}) " "";
        "~^1 " 413;
        default "";
    }}
    map $refused_method $too_large_message {{
        "" "the request body is larger than MAX_UPLOAD_MB ({max_body_mb:g} MB)";
        default "a $refused_method request carries no body here: only uploads (POST) do";
    }}
    map $allow_methods $allow_header {{ "" "{", ".join(SERVED_METHODS)}"; default $allow_methods; }}"""


def key_maps(keys: tuple[str, ...]) -> str:
    """$refused_key: 1 for a request that presents no key the service knows, from its head
    alone, whatever its method, but a CORS preflight and GET or HEAD of an open route (the
    page, /ping). The header forms are api_keys.py's, matched byte for byte (the patterns
    escape every character but letters and digits: any key is one)."""
    if not keys:
        return '    map $request_method $refused_key { default ""; }'
    x_api_key = [pattern for key in keys for pattern in api_keys.x_api_key_patterns(key)]
    authorization = [pattern for key in keys for pattern in api_keys.authorization_patterns(key)]
    return "\n".join(
        [
            "    map $http_x_api_key $key_in_x_api_key {",
            *(f'        "~{pattern}" 1;' for pattern in x_api_key),
            '        default "";',
            "    }",
            "    map $http_authorization $key_in_authorization {",
            *(f'        "~{pattern}" 1;' for pattern in authorization),
            '        default "";',
            "    }",
            '    map "$request_method $uri" $open_route {',
            '        "~^OPTIONS " 1;',
            f'        "~{api_keys.open_route_pattern()}" 1;',
            '        default "";',
            "    }",
            '    map "$key_in_x_api_key$key_in_authorization$open_route" $refused_key { "" 1; default ""; }',
        ]
    )
