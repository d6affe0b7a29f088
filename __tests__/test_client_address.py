"""Who the client is behind proxies (app/http/client_address.py, TRUSTED_PROXIES): the
address nginx's realip module would give, so that gunicorn alone and the front agree."""

from __future__ import annotations

import ipaddress

import pytest

from app.http.client_address import real_address
from app.settings import ConfigError, Settings

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/64"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("192.0.2.7", "203.0.113.9", "192.0.2.7"),  # not a trusted proxy: its header is its word
        ("10.0.0.5", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.5", "198.51.100.1, 203.0.113.9", "203.0.113.9"),  # the client wrote the first one
        ("10.0.0.5", "203.0.113.9, 10.1.2.3", "203.0.113.9"),  # through two proxies of ours
        ("10.0.0.5", "10.1.2.3", "10.1.2.3"),  # only proxies: the last one that said
        ("10.0.0.5", "", "10.0.0.5"),
        ("10.0.0.5", "not-an-address", "10.0.0.5"),
        ("fd00::1", "2001:db8::7", "2001:db8::7"),
    ],
)
def test_the_client_is_the_first_address_from_the_right_that_is_not_a_trusted_proxy(peer, forwarded_for, client):
    assert real_address(peer, forwarded_for, TRUSTED) == client


def test_trusted_proxies_are_read_as_networks():
    settings = Settings.from_env({"TRUSTED_PROXIES": " 10.0.0.5 , 10.1.0.0/16,fd00::1/64,10.0.0.5"})
    assert settings.trusted_proxies == ("10.0.0.5/32", "10.1.0.0/16", "fd00::/64")
    assert Settings.from_env({}).trusted_proxies == ()


@pytest.mark.parametrize("value", ["proxy.lab", "10.0.0.0/33", "10.0.0.1-10.0.0.9", "*"])
def test_a_trusted_proxy_that_is_not_an_address_stops_the_start_in_one_line(value):
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": value})
