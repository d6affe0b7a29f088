"""The nginx front's config, rendered from app/serve/nginx.conf.j2, is one nginx accepts:
`nginx -t` on what the supervisor would write, for the settings that change it."""

from __future__ import annotations

import subprocess

import pytest
from support import needs_tool, starts_processes

from app.serve.front import FrontSettings, nginx_binary, render_config

CASES = {
    "defaults": {},
    "keys with symbols, proxies, IPv6": {
        "api_keys": ("S3cret!Key#2026", "plain"),
        "trusted_proxies": ("10.0.0.0/8", "fd00::/64"),
        "host": "::1",
    },
    "systemd's 1024 files": {"open_files": 1024},
    "a lab's own CORS": {"cors_any_origin": False},
}


@pytest.mark.e2e
@needs_tool(nginx_binary() is not None, "nginx is not installed", "nginx")
@pytest.mark.parametrize("changes", CASES.values(), ids=CASES.keys())
def test_nginx_accepts_the_config_the_supervisor_writes(changes, tmp_path):
    starts_processes("nginx -t")
    settings = {
        "port": 18080,
        "host": "127.0.0.1",
        "directory": tmp_path,
        "max_body_mb": 50.0,
        "upstream_timeout_s": 90.0,
        "cors_any_origin": True,
        "open_files": 65536,
        **changes,
    }
    config = tmp_path / "nginx.conf"
    config.write_text(render_config(FrontSettings(**settings)))
    checked = subprocess.run(
        [nginx_binary(), "-t", "-q", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr + config.read_text()
