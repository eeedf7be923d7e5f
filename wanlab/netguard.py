"""Outgoing HTTP to user-given URLs that cannot be turned against the host (SSRF).

Every hop (the URL and each redirect) is checked before it is contacted: its scheme must be
allowed, and every address its host resolves to must be public (not loopback, private,
link-local, shared, multicast or reserved) unless the policy allow-lists that network. The
connection then goes to the checked address itself (TLS still verifies the host name), so a
DNS answer that changes between check and connect cannot reach another address. Used for LoRA
downloads and, in the HTTP service, webhook deliveries.
"""
from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Iterator, Mapping
from urllib.parse import urljoin

from .errors import UnsafeURLError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class NetPolicy:
    """Which URLs outgoing requests may reach.

    ``schemes``: allowed URL schemes (https only by default). ``allow``: networks or addresses
    (``"127.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"``) reachable although they are not public.
    ``max_redirects``: redirects followed, each one checked like the first URL. ``timeout_s``:
    seconds each connect, read or write may wait. ``ca_file``: a PEM file of certificate
    authorities to trust instead of the default ones (certifi's), for a site's own CA.

    >>> NetPolicy(schemes=("http", "https"), allow=("127.0.0.1",))  # a test server on loopback
    NetPolicy(schemes=('http', 'https'), allow=('127.0.0.1',), max_redirects=5, timeout_s=30.0, ca_file=None)
    """

    schemes: tuple[str, ...] = ("https",)
    allow: tuple[str, ...] = ()
    max_redirects: int = 5
    timeout_s: float = 30.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "schemes", tuple(s.lower() for s in self.schemes))
        object.__setattr__(self, "allow", tuple(self.allow))
        for entry in self.allow:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise UnsafeURLError(f"allow: must be IP addresses or networks such as '10.0.0.0/8'; got {entry!r}")

    def allows(self, address: Address) -> bool:
        """True when ``address`` is public or inside an allow-listed network."""
        if is_public(address):
            return True
        plain = _unmapped(address)
        return any(plain in ipaddress.ip_network(entry, strict=False) for entry in self.allow)


def is_public(address: Address) -> bool:
    """True for globally routable unicast addresses (an IPv4-mapped IPv6 address counts as its IPv4).

    >>> is_public(ipaddress.ip_address("169.254.169.254")), is_public(ipaddress.ip_address("93.184.216.34"))
    (False, True)
    """
    plain = _unmapped(address)
    return plain.is_global and not plain.is_multicast


def address_kind(address: Address) -> str:
    """Why an address is not public, in words (``"loopback"``, ``"private"``, ``"link-local"`` ...)."""
    plain = _unmapped(address)
    for attribute, word in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                            ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                            ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(plain, attribute):
            return word
    return "public" if is_public(plain) else "not globally routable"


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class Target:
    """A URL that passed the policy, and the checked address to connect to."""

    url: Any  # httpx.URL
    address: Address


def check_url(url: str, policy: NetPolicy) -> Target:
    """Check ``url`` against ``policy`` (scheme, then every resolved address); raise
    :class:`UnsafeURLError` naming the URL, the rule and the address, or ``OSError`` when the host
    does not resolve.

    >>> check_url("https://10.0.0.7/x", NetPolicy())
    Traceback (most recent call last):
    wanlab.errors.UnsafeURLError: https://10.0.0.7/x: must reach only public addresses; got 10.0.0.7 (private)
    """
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UnsafeURLError(f"{url}: must be a valid URL; got {exc}") from exc
    if parsed.scheme not in policy.schemes:
        allowed = " or ".join(policy.schemes)
        raise UnsafeURLError(f"{url}: must be an {allowed} URL; got scheme {parsed.scheme or 'none'!r}")
    if not parsed.host:
        raise UnsafeURLError(f"{url}: must name a host; got none")
    if parsed.userinfo:
        raise UnsafeURLError(f"{url}: must not carry a user name or password")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = resolve(parsed.host, port)
    for address in addresses:
        if not policy.allows(address):
            shown = _unmapped(address)
            raise UnsafeURLError(f"{url}: must reach only public addresses; got {shown} ({address_kind(address)})")
    return Target(url=parsed, address=addresses[0])


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (an IP literal resolves to itself); OSError when none."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    if not found:
        raise OSError(f"{host} resolves to no address")
    return found


@contextlib.contextmanager
def stream(method: str, url: str, policy: NetPolicy, *, headers: Mapping[str, str] | None = None,
           content: bytes | None = None) -> Iterator[Any]:
    """An ``httpx.Response`` (not yet read) for ``url``, each hop checked and pinned to its address.

    Redirects are followed by hand, up to ``policy.max_redirects``, each re-checked; proxies from
    the environment are ignored (a proxy would connect to unchecked addresses).

    >>> with stream("GET", "https://example.org/lora.safetensors", NetPolicy()) as response:  # doctest: +SKIP
    ...     data = response.read()
    """
    import ssl

    import httpx

    verify: Any = ssl.create_default_context(cafile=policy.ca_file) if policy.ca_file else True
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=policy.timeout_s, verify=verify) as client:
        current = url
        for _ in range(policy.max_redirects + 1):
            target = check_url(current, policy)
            response = client.send(_pinned_request(client, method, target, headers, content), stream=True)
            location = response.headers.get("location")
            if response.is_redirect and location:
                response.close()
                current = urljoin(str(target.url), location)
                if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                    method, content = "GET", None
                continue
            try:
                yield response
            finally:
                response.close()
            return
        raise UnsafeURLError(f"{url}: must reach its content within {policy.max_redirects} redirects; got more")


def request(method: str, url: str, policy: NetPolicy, *, headers: Mapping[str, str] | None = None,
            content: bytes | None = None) -> Any:
    """:func:`stream`, read whole: for small requests such as a webhook delivery.

    >>> request("POST", "https://example.org/hook", NetPolicy(), content=b"{}").status_code  # doctest: +SKIP
    200
    """
    with stream(method, url, policy, headers=headers, content=content) as response:
        response.read()
        return response


def _pinned_request(client: Any, method: str, target: Target, headers: Mapping[str, str] | None,
                    content: bytes | None) -> Any:
    """A request to the checked address, with the original host in ``Host`` and in TLS (SNI, certificate)."""
    host = target.url.host
    default_port = 443 if target.url.scheme == "https" else 80
    bracketed = f"[{host}]" if ":" in host else host  # an IPv6 literal
    host_header = bracketed if target.url.port in (None, default_port) else f"{bracketed}:{target.url.port}"
    pinned = target.url.copy_with(host=str(target.address))
    return client.build_request(method, pinned, headers={**(headers or {}), "Host": host_header}, content=content,
                                extensions={"sni_hostname": host})
