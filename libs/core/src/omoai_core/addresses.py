"""Which network addresses a server may be sent to (the SSRF rule): the ASR service's ``audio_url``
fetches and the operator's webhook deliveries judge every resolved address with :func:`refusal`.

Refused unless allowed: private, loopback, link-local, multicast, reserved and otherwise non-global
addresses, deprecated or tunnelled IPv6 forms, and IPv6 forms that embed such an IPv4 address (NAT64,
6to4, IPv4-mapped or -compatible: on a NAT64 cluster the embedded address is where packets go).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: IPv6 ranges refused outright: deprecated site-local, local-use NAT64 (RFC 8215) and Teredo
#: (its client address is obfuscated, so what it reaches cannot be checked).
_REFUSED_V6 = tuple(ipaddress.IPv6Network(n) for n in ("fec0::/10", "64:ff9b:1::/48", "2001::/32"))
#: IPv6 forms that carry an IPv4 address in their low 32 bits: NAT64 (RFC 6052), IPv4-compatible,
#: IPv4-mapped and IPv4-translated (SIIT). The embedded address is checked like any IPv4 address.
_EMBED_LOW32 = tuple(ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "::/96", "::ffff:0:0/96", "::ffff:0:0:0/96"))
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (NAT64, 6to4, mapped, compatible), if any."""
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    if any(ip in net for net in _EMBED_LOW32):
        if int(ip) >> 32 == 0 and int(ip) <= 1:  # :: and ::1 are themselves, not IPv4 forms
            return None
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def kind_of(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be reached, or None when it is a public unicast address."""
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in net for net in _REFUSED_V6):
        return "deprecated or tunnelled"
    if not ip.is_global:
        return (
            "loopback"
            if ip.is_loopback
            else "link-local"
            if ip.is_link_local
            else "private"
            if ip.is_private
            else "non-public"
        )
    return None


def refusal(
    address: str, *, allow_private: bool = False, allowed_networks: Sequence[IPNetwork] = ()
) -> tuple[IPAddress, str | None]:
    """The parsed address and why it is refused (``"the loopback address 127.0.0.1"``), or None
    when it may be reached. ``allow_private`` and ``allowed_networks`` are the operator's allowance."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    inner = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if allow_private or any(a in net for net in allowed_networks for a in (ip, inner) if a is not None):
        return ip, None
    for candidate in (ip, inner):
        if candidate is None:
            continue
        kind = kind_of(candidate)
        if kind is not None:
            via = f" (embedded in {ip})" if candidate is inner else ""
            return ip, f"the {kind} address {candidate}{via}"
    return ip, None


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True
