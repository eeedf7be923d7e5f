"""Outgoing HTTP to user-given URLs that cannot be turned against the host (SSRF).

Holds :class:`NetPolicy` (which URLs may be reached), the checks (:func:`precheck`, :func:`check_url`,
:func:`is_public`) and :func:`stream` / :func:`request`, which check every hop and connect to the
checked address. Used for LoRA downloads and, in the HTTP service, webhook deliveries.
"""
from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from .errors import UnsafeURLError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = {"http": 80, "https": 443}
#: IPv6 prefixes whose last 32 bits are an IPv4 address: NAT64 (well-known and local-use, RFC 6052/8215).
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


@dataclass(frozen=True)
class NetPolicy:
    """Which URLs outgoing requests may reach.

    Attributes:
        schemes: Allowed URL schemes (https only by default), lower-cased.
        allow: Networks or addresses (``"127.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"``) reachable although
            they are not public.
        max_redirects: Redirects followed, each one checked like the first URL.
        timeout_s: Seconds each connect, read or write may wait.
        ca_file: A PEM file of certificate authorities to trust instead of the default ones
            (certifi's), for a site's own CA.
        hosts: When given, the only destinations that the URL and every redirect may name:
            ``"HOST:PORT"`` admits that host name or address at that port only, a bare ``"HOST"`` only
            at the scheme's own port (80 for http, 443 for https); a name admits the name only, never
            the address it resolves to (``localhost`` does not admit ``127.0.0.1``), and an address only
            itself. With ``hosts``, a non-public address is reached only when the URL names it
            literally (a listed name that resolves to a private or loopback address is refused even
            when the address is in ``allow``).
        keep_method: A redirect that would turn the request into another method (301, 302 or 303
            answering a POST) is not followed; its answer is returned as it is (a webhook's receiver
            must answer at the URL given, not send the event elsewhere as a GET).

    Raises:
        wanlab.UnsafeURLError: An ``allow`` entry is not an address or network, or a ``hosts`` entry
            is not ``HOST`` or ``HOST:PORT``.

    Example:
        >>> NetPolicy(schemes=("http", "https"), allow=("127.0.0.1",))  # doctest: +NORMALIZE_WHITESPACE
        NetPolicy(schemes=('http', 'https'), allow=('127.0.0.1',), max_redirects=5, timeout_s=30.0,
                  ca_file=None, hosts=(), keep_method=False)
        >>> NetPolicy(allow=("intranet",))
        Traceback (most recent call last):
        wanlab.errors.UnsafeURLError: allow: must be IP addresses or networks such as '10.0.0.0/8'; got 'intranet'
    """

    schemes: tuple[str, ...] = ("https",)
    allow: tuple[str, ...] = ()
    max_redirects: int = 5
    timeout_s: float = 30.0
    ca_file: str | None = None
    hosts: tuple[str, ...] = ()
    keep_method: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "schemes", tuple(s.lower() for s in self.schemes))
        object.__setattr__(self, "allow", tuple(self.allow))
        object.__setattr__(self, "hosts", tuple(self.hosts))
        for entry in self.hosts:
            parse_host(entry)
        for entry in self.allow:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise UnsafeURLError(
                    f"allow: must be IP addresses or networks such as '10.0.0.0/8'; got {entry!r}") from exc

    def allows_host(self, host: str, port: int, scheme: str = "https") -> bool:
        """True when ``hosts`` is empty or lists ``host`` at ``port`` (a bare entry: the scheme's own port).

        Args:
            host: The URL's host (an IPv6 literal with or without brackets); case is ignored.
            port: The port the request goes to.
            scheme: The URL's scheme, which names a bare entry's port.

        Returns:
            Whether the destination is admitted.

        Example:
            >>> policy = NetPolicy(hosts=("hooks.example.org", "127.0.0.1:9000"))
            >>> policy.allows_host("hooks.example.org", 443), policy.allows_host("hooks.example.org", 8443)
            (True, False)
            >>> policy.allows_host("127.0.0.1", 9000, "http")
            True
        """
        if not self.hosts:
            return True
        wanted = host.strip("[]").lower()
        own = DEFAULT_PORTS.get(scheme.lower())
        return any(h == wanted and (p if p is not None else own) == port for h, p in map(parse_host, self.hosts))

    def allows(self, address: Address) -> bool:
        """True when ``address`` is public or inside an allow-listed network.

        Args:
            address: An ``ipaddress`` address; an IPv6 address carrying an IPv4 one is judged by it.

        Returns:
            Whether a request may connect to it.

        Example:
            >>> policy = NetPolicy(allow=("10.0.0.0/8",))
            >>> policy.allows(ipaddress.ip_address("10.1.2.3")), policy.allows(ipaddress.ip_address("127.0.0.1"))
            (True, False)
        """
        if is_public(address):
            return True
        plain = _unmapped(address)
        return any(plain in ipaddress.ip_network(entry, strict=False) for entry in self.allow)


def parse_host(entry: str) -> tuple[str, int | None]:
    """``"HOST"`` or ``"HOST:PORT"`` (an IPv6 address in brackets when it has a port) as (host, port or None).

    Args:
        entry: One entry of :attr:`NetPolicy.hosts`.

    Returns:
        ``(host, port)``: the host lower-cased, the port ``None`` when the entry names none.

    Raises:
        wanlab.UnsafeURLError: ``entry`` is not a string of that form (a scheme, path, user info, space or
            port outside 1..65535).

    Example:
        >>> parse_host("hooks.example.org"), parse_host("127.0.0.1:9000"), parse_host("[::1]:9000")
        (('hooks.example.org', None), ('127.0.0.1', 9000), ('::1', 9000))
        >>> parse_host("https://hooks.example.org")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        wanlab.errors.UnsafeURLError: host: must be HOST or HOST:PORT (...), without scheme or path; got 'https://...'
    """
    rule = "HOST or HOST:PORT (an IPv6 address as [ADDRESS]:PORT), without scheme or path"
    text = entry.strip() if isinstance(entry, str) else ""
    host, port = text, None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UnsafeURLError(f"host: must be {rule}; got {entry!r}")
        port = rest[1:] or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    port_ok = port is None or (port.isascii() and port.isdigit() and 0 < int(port) < 65536)
    if not host or any(c in host for c in "/@?# ") or not port_ok:
        raise UnsafeURLError(f"host: must be {rule}; got {entry!r}")
    return host.lower(), int(port) if port is not None else None


def is_public(address: Address) -> bool:
    """True for globally routable unicast addresses (an IPv4-mapped IPv6 address counts as its IPv4).

    An IPv6 address that carries an IPv4 one (mapped ``::ffff:a.b.c.d``, IPv4-compatible, NAT64,
    6to4, Teredo) is judged by that IPv4 address.

    Args:
        address: An ``ipaddress`` address.

    Returns:
        False for loopback, private, link-local, shared, multicast, reserved and unspecified addresses.

    Example:
        >>> is_public(ipaddress.ip_address("169.254.169.254")), is_public(ipaddress.ip_address("93.184.216.34"))
        (False, True)
        >>> is_public(ipaddress.ip_address("::ffff:127.0.0.1"))
        False
    """
    plain = _unmapped(address)
    return plain.is_global and not plain.is_multicast


def address_kind(address: Address) -> str:
    """Why an address is not public, in words (``"loopback"``, ``"private"``, ``"link-local"`` ...).

    Args:
        address: An ``ipaddress`` address (judged as :func:`is_public` judges it).

    Returns:
        ``"loopback"``, ``"link-local"``, ``"multicast"``, ``"unspecified"``, ``"private"``,
        ``"reserved"``, ``"not globally routable"``, or ``"public"``.

    Example:
        >>> address_kind(ipaddress.ip_address("169.254.169.254")), address_kind(ipaddress.ip_address("::1"))
        ('link-local', 'loopback')
    """
    plain = _unmapped(address)
    for attribute, word in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                            ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                            ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(plain, attribute):
            return word
    return "public" if is_public(plain) else "not globally routable"


def _unmapped(address: Address) -> Address:
    """The IPv4 address an IPv6 address carries, when it carries one (then it is judged by it); else the address.

    Carried: mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``, e.g. ``::7f00:1``), NAT64
    (``64:ff9b::/96``), 6to4 (``2002::/16``) and Teredo (``2001::/32``, its client).
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = int(address)
    if any(address in net for net in NAT64) or (packed >> 32 == 0 and packed > 1):  # NAT64; ::a.b.c.d
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class Target:
    """A URL that passed the policy, and the checked address to connect to.

    Attributes:
        url: The parsed ``httpx.URL``.
        address: The first address its host resolved to, all of them checked.

    Example:
        >>> target = check_url("http://127.0.0.1:9000/hook", NetPolicy(schemes=("http",), allow=("127.0.0.1",)))
        >>> str(target.url), target.address
        ('http://127.0.0.1:9000/hook', IPv4Address('127.0.0.1'))
    """

    url: Any  # httpx.URL
    address: Address


def check_url(url: str, policy: NetPolicy) -> Target:
    """Check ``url`` against ``policy``: :func:`precheck`, then every address its host resolves to.

    Every address must be public (not loopback, private, link-local, shared, multicast or reserved)
    unless ``policy.allow`` lists its network.

    Args:
        url: The URL to reach.
        policy: The policy it must pass.

    Returns:
        A :class:`Target`: the parsed URL and the checked address to connect to.

    Raises:
        wanlab.UnsafeURLError: The URL breaks a rule; the message names the URL, the rule and the address.
        OSError: The host does not resolve.

    Example:
        >>> check_url("https://10.0.0.7/x", NetPolicy())
        Traceback (most recent call last):
        wanlab.errors.UnsafeURLError: https://10.0.0.7/x: must reach only public addresses; got 10.0.0.7 (private)
        >>> check_url("http://127.0.0.1:9000/hook", NetPolicy(schemes=("http",), allow=("127.0.0.1",))).address
        IPv4Address('127.0.0.1')
    """
    parsed, port = precheck(url, policy)
    addresses = resolve(parsed.host, port)
    literal = _literal(parsed.host)
    for address in addresses:
        named = literal is not None and _unmapped(literal) == _unmapped(address)
        if not policy.allows(address) or (policy.hosts and not is_public(address) and not named):
            shown = _unmapped(address)
            how = "" if named or not policy.hosts else " (a listed name admits no private address: list the address)"
            raise UnsafeURLError(f"{url}: must reach only public addresses; got {shown} ({address_kind(address)})"
                                 f"{how}")
    return Target(url=parsed, address=addresses[0])


def precheck(url: str, policy: NetPolicy) -> tuple[Any, int]:
    """Check what can be known of ``url`` without DNS.

    That is the scheme, host, port, user info, allowed hosts, and an IP literal's address. A service
    runs it when a request names the URL, :func:`check_url` again when it is fetched.

    Args:
        url: The URL.
        policy: The policy it must pass.

    Returns:
        ``(parsed, port)``: the ``httpx.URL`` and its port (the scheme's own when it names none).

    Raises:
        wanlab.UnsafeURLError: The URL is invalid, has a scheme the policy does not allow, no host, a user
            name or password, a port outside 1..65535, a host outside ``policy.hosts``, or names a
            non-public address the policy does not allow.

    Example:
        >>> precheck("https://[::ffff:127.0.0.1]/x", NetPolicy())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        wanlab.errors.UnsafeURLError: https://[::ffff:127.0.0.1]/x: must reach only public ...; got 127.0.0.1 (loopback)
        >>> precheck("https://example.org/x", NetPolicy())[1]
        443
    """
    import httpx

    try:
        parsed = httpx.URL(url)
        port = parsed.port or DEFAULT_PORTS.get(parsed.scheme, 443)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeURLError(f"{url}: must be a valid URL; got {exc}") from exc
    if parsed.scheme not in policy.schemes:
        allowed = " or ".join(policy.schemes)
        raise UnsafeURLError(f"{url}: must be an {allowed} URL; got scheme {parsed.scheme or 'none'!r}")
    if not parsed.host:
        raise UnsafeURLError(f"{url}: must name a host; got none")
    if parsed.userinfo:
        raise UnsafeURLError(f"{url}: must not carry a user name or password")
    if not 0 < port < 65536:
        raise UnsafeURLError(f"{url}: must name a port in 1..65535; got {port}")
    if not policy.allows_host(parsed.host, port, parsed.scheme):
        raise UnsafeURLError(f"{url}: must go to one of the allowed hosts ({', '.join(policy.hosts)}); got "
                             f"{parsed.host}:{port}")
    literal = _literal(parsed.host)
    if literal is not None and not policy.allows(literal):
        raise UnsafeURLError(f"{url}: must reach only public addresses; got {_unmapped(literal)} "
                             f"({address_kind(literal)})")
    return parsed, port


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (an IP literal resolves to itself).

    Args:
        host: A host name or IP literal (an IPv6 literal with or without brackets).
        port: The port (passed to ``getaddrinfo``).

    Returns:
        The distinct addresses, in the resolver's order.

    Raises:
        OSError: The host does not resolve (``socket.gaierror``) or resolves to no address.

    Example:
        >>> resolve("[::1]", 443)
        [IPv6Address('::1')]
    """
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

    Every hop (the URL and each redirect) passes :func:`check_url` before it is contacted. The
    connection then goes to the checked address itself (the ``Host`` header and TLS still use the
    host name, so the certificate is verified against it), so a DNS answer that changes between
    check and connect cannot reach another address. Redirects are followed by hand, up to
    ``policy.max_redirects``; proxies from the environment are ignored (a proxy would connect to
    unchecked addresses).

    Args:
        method: The HTTP method.
        url: The URL.
        policy: The policy every hop must pass.
        headers: Request headers (``Host`` is set by this function).
        content: The request body; dropped when a redirect turns the request into a GET.

    Yields:
        The final ``httpx.Response``, closed when the block ends.

    Raises:
        wanlab.UnsafeURLError: A hop breaks the policy, or there are more than ``policy.max_redirects``
            redirects.
        OSError: A host does not resolve.
        httpx.HTTPError: The connection fails or times out.

    Example:
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
            becomes_get = response.status_code == 303 or (response.status_code in (301, 302) and method == "POST")
            if response.is_redirect and location and not (becomes_get and policy.keep_method):
                response.close()
                current = urljoin(str(target.url), location)
                if becomes_get:
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

    Args:
        method: The HTTP method.
        url: The URL.
        policy: The policy every hop must pass.
        headers: Request headers.
        content: The request body.

    Returns:
        The ``httpx.Response``, its body read.

    Raises:
        wanlab.UnsafeURLError: A hop breaks the policy, or there are too many redirects.
        OSError: A host does not resolve.
        httpx.HTTPError: The connection fails or times out.

    Example:
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
