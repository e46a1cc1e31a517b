"""``check_address`` refuses every address that reaches a non-public IPv4 host, however it is
written in IPv6 (NAT64, 6to4, IPv4-mapped, -compatible, -translated), and the deprecated or
tunnelled ranges; public addresses in the same forms still pass."""

from __future__ import annotations

import pytest
from omoai_asr.fetch import FetchPolicy, UrlNotAllowedError, check_address

POLICY = FetchPolicy(allowed_schemes=frozenset({"http", "https"}))

REFUSED = {
    "nat64 metadata": "64:ff9b::a9fe:a9fe",
    "nat64 dotted private": "64:ff9b::10.0.0.1",
    "nat64 loopback": "64:ff9b::127.0.0.1",
    "nat64 local-use prefix": "64:ff9b:1::a00:1",
    "6to4 metadata": "2002:a9fe:a9fe::1",
    "6to4 private": "2002:c0a8:0101::1",
    "ipv4-compatible private": "::10.0.0.1",
    "ipv4-compatible metadata": "::169.254.169.254",
    "ipv4-mapped loopback": "::ffff:127.0.0.1",
    "ipv4-mapped private hex": "::ffff:a00:1",
    "ipv4-translated private": "::ffff:0:10.0.0.1",
    "teredo": "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "site-local": "fec0::1",
    "site-local high": "feff::1",
    "loopback v6": "::1",
    "unspecified v6": "::",
    "link-local v6 with zone": "fe80::1%eth0",
    "unique local": "fd00::1",
    "multicast v6": "ff02::1",
    "shared address space": "100.64.0.1",
    "metadata": "169.254.169.254",
    "private": "192.168.1.1",
    "multicast v4": "224.0.0.1",
    "nat64 carrier-grade": "64:ff9b::100.64.0.1",
}

ALLOWED = {
    "public v4": "8.8.8.8",
    "public v6": "2606:4700:4700::1111",
    "nat64 public": "64:ff9b::8.8.8.8",
    "6to4 public": "2002:808:808::1",
    "ipv4-mapped public": "::ffff:8.8.8.8",
}


@pytest.mark.parametrize("address", REFUSED.values(), ids=REFUSED.keys())
def test_non_public_address_forms_are_refused(address: str):
    with pytest.raises(UrlNotAllowedError) as err:
        check_address(address, POLICY, "evil.example")
    assert err.value.http_status == 403


@pytest.mark.parametrize("address", ALLOWED.values(), ids=ALLOWED.keys())
def test_public_address_forms_pass(address: str):
    check_address(address, POLICY, "good.example")


def test_the_refusal_names_the_embedded_address():
    with pytest.raises(UrlNotAllowedError, match=r"169\.254\.169\.254 \(embedded in 64:ff9b::a9fe:a9fe\)"):
        check_address("64:ff9b::a9fe:a9fe", POLICY, "evil.example")


def test_an_allowed_network_admits_its_embedded_forms_too():
    import ipaddress

    policy = FetchPolicy(allowed_schemes=frozenset({"http"}), allowed_networks=(ipaddress.ip_network("10.0.12.0/24"),))
    check_address("64:ff9b::10.0.12.5", policy, "store.internal")
    with pytest.raises(UrlNotAllowedError):
        check_address("64:ff9b::10.0.13.5", policy, "store.internal")
