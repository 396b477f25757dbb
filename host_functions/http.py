"""HTTP GET/POST tools restricted to an allow-list of hosts.

`AllowListedHTTP` gives guest code ``http_get`` and ``http_post`` against a
fixed set of hosts, through `httpx`, with these rules:

* Only ``http`` and ``https`` URLs, without user info (``user:pass@``).
* The host must be on the allow-list *exactly* (after lower-casing and IDNA
  encoding): no wildcards, no sub-domains, ``localhost`` is not
  ``127.0.0.1``. An entry ``host`` admits the scheme's default port only
  (80/443); ``host:port`` admits that port; an entry may be prefixed with a
  scheme (``https://api.example.com``) to admit only that scheme. A refused
  URL never opens a connection.
* Redirects are followed by this code, not by httpx: up to ``max_redirects``
  hops, each checked against the allow-list *before* it is requested. A
  redirect to a host that is not allowed raises `HTTPToolError` (nothing is
  sent there). 301/302/303 after a POST continue as a GET without a body,
  307/308 repeat the POST.
* Credentials live on the host: ``headers_by_host`` maps an allow-list entry
  to headers (``Authorization``, API keys...) added to requests for that
  entry only, including on redirect hops to it, and never to other hosts.
  The guest cannot set headers. Only a fixed set of harmless response headers
  is returned, and the values of credential-like configured headers (see
  `is_credential_header`; each long token of them too) are redacted from the
  returned headers, text and URL, in case a server echoes them. Other
  configured headers (``Accept``, ``User-Agent``...) are not redacted.
* The response body is streamed and refused (`HTTPToolError`) once it
  exceeds ``max_bytes`` after decompression; a ``Content-Length`` above the
  cap is refused before reading. Responses are never silently truncated.
* ``timeout_s`` bounds the whole call (all hops and the body): each hop gets
  the remaining budget as its connect/read/write timeout and the body is cut
  off when the deadline passes, so a call ends within about ``timeout_s``
  plus at most one socket read timeout.
* No cookies are stored between calls, and environment proxies and
  ``.netrc`` are ignored (``trust_env=False``).

Non-2xx responses are returned normally (check ``status``). All failures
raise `HTTPToolError` (a `ValueError`) whose message never contains the
configured credentials. One `AllowListedHTTP` may be used from many threads.
"""

import http.cookiejar
import json
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from typing_extensions import TypedDict  # pydantic needs this variant on Python < 3.12

from ._doc import tool_description

__all__ = [
    "SAFE_RESPONSE_HEADERS",
    "AllowListedHTTP",
    "HTTPToolError",
    "HttpResponse",
    "is_credential_header",
    "register",
]


class HTTPToolError(ValueError):
    """A request was refused or failed; the message says why (for the caller)."""


class HttpResponse(TypedDict):
    """What the guest sees of a response."""

    #: HTTP status code of the final response (redirects that were followed are not included).
    status: int
    #: A subset of the response headers (see `SAFE_RESPONSE_HEADERS`), names lower-cased.
    headers: dict[str, str]
    #: The body decoded as text (charset from Content-Type, else UTF-8; undecodable bytes replaced).
    text: str
    #: The final URL, after any redirects that were followed.
    url: str


#: Response headers passed back to the guest; everything else (Set-Cookie, server internals...) is dropped.
SAFE_RESPONSE_HEADERS: frozenset[str] = frozenset(
    {
        "content-type",
        "content-length",
        "content-language",
        "location",
        "date",
        "last-modified",
        "etag",
        "cache-control",
        "expires",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    }
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Longest URL a guest may pass.
MAX_URL_CHARS = 8192
_REDACTED = "[REDACTED]"
#: Parts of a credential header value at least this long are redacted on their own too ("Bearer <token>").
_MIN_SECRET_TOKEN = 8
#: Header names (lower-case) whose configured values are credentials.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
#: A configured header whose lower-cased name contains one of these is a credential too.
_CREDENTIAL_WORDS = ("key", "token", "secret", "auth", "password", "passwd", "session", "signature", "credential")


def is_credential_header(name: str) -> bool:
    """Whether the configured header `name` carries a credential (its value is redacted from responses)."""
    lowered = name.lower()
    return lowered in _CREDENTIAL_HEADERS or any(word in lowered for word in _CREDENTIAL_WORDS)


def _normalize_host(host: str) -> str:
    """Lower-cased ASCII (IDNA) form of a host name or IP address."""
    literal = f"[{host}]" if ":" in host else host
    return httpx.URL(f"http://{literal}/").raw_host.decode("ascii").lower()


_Origin = tuple[str | None, str, int | None]  # (scheme or None for both, host, port or None for the default)


def _parse_entry(entry: str) -> _Origin:
    """Parse an allow-list entry ``[scheme://]host[:port]``."""
    text = entry.strip()
    scheme: str | None = None
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"allow-list entry {entry!r}: only http and https are supported")
    try:
        parts = urlsplit(f"//{text}")
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid allow-list entry {entry!r}: {exc}") from None
    if parts.path or parts.query or parts.fragment or parts.username or parts.password or not parts.hostname:
        raise ValueError(f"invalid allow-list entry {entry!r}: expected [scheme://]host[:port]")
    return scheme, _normalize_host(parts.hostname), port


def _origin_matches(origin: _Origin, scheme: str, host: str, port: int) -> bool:
    o_scheme, o_host, o_port = origin
    if o_host != host or (o_scheme is not None and o_scheme != scheme):
        return False
    return port == (o_port if o_port is not None else _DEFAULT_PORTS[scheme])


def _no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that refuses to store or send any cookie."""
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class AllowListedHTTP:
    """HTTP GET/POST to allow-listed hosts only, with host-side credentials and caps.

    Args:
        allowed_hosts: Allow-list entries ``[scheme://]host[:port]``. Without a
            port only the scheme's default port is admitted; without a scheme
            both http and https are.
        headers_by_host: Extra request headers per allow-list entry (spelled
            exactly as in `allowed_hosts`), e.g. ``{"api.example.com":
            {"Authorization": "Bearer ..."}}``. Never shown to the guest.
        max_bytes: Largest response body (after decompression) and largest
            request body, in bytes. Larger responses raise `HTTPToolError`.
        timeout_s: Time budget of one call, redirects and body included.
        transport: An httpx transport to use instead of the network (tests,
            custom TLS or proxies).
        max_redirects: Most redirects followed in one call (0: return the 3xx).
    """

    def __init__(
        self,
        allowed_hosts: set[str],
        *,
        headers_by_host: dict[str, dict[str, str]] | None = None,
        max_bytes: int = 1_000_000,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        max_redirects: int = 5,
    ) -> None:
        if isinstance(allowed_hosts, str):
            raise TypeError("allowed_hosts must be a set of host names, not a string")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        self._origins: dict[str, _Origin] = {entry: _parse_entry(entry) for entry in allowed_hosts}
        self._headers: list[tuple[_Origin, dict[str, str]]] = []
        for entry, headers in (headers_by_host or {}).items():
            if entry not in self._origins:
                raise ValueError(f"headers_by_host key {entry!r} is not in allowed_hosts")
            self._headers.append((self._origins[entry], dict(headers)))
        self._secrets = self._secret_strings()
        self.allowed_hosts = frozenset(allowed_hosts)
        self.max_bytes = max_bytes
        self.timeout_s = float(timeout_s)
        self.max_redirects = max_redirects
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            cookies=_no_cookies(),
            timeout=self.timeout_s,
        )

    def __repr__(self) -> str:  # never shows the configured headers
        return (
            f"AllowListedHTTP({sorted(self.allowed_hosts)!r}, max_bytes={self.max_bytes}, timeout_s={self.timeout_s})"
        )

    def close(self) -> None:
        """Close the connection pool (and the transport)."""
        self._client.close()

    def __enter__(self) -> "AllowListedHTTP":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ tools

    def http_get(self, url: str, params: dict[str, str] | None = None) -> HttpResponse:
        """Send an HTTP GET request to an allowed host and return the response.

        The result is a dict with status (int), headers (a few lower-cased response headers), text (the body)
        and url (the final URL). Only http(s) URLs on the allowed hosts can be requested; redirects to other
        hosts are refused. Authentication is added automatically: never put credentials in the URL. Non-2xx
        responses are returned (check status); an oversized response or a timeout is an error.

        Args:
            url: Absolute http:// or https:// URL on an allowed host.
            params: Query-string parameters to add to the URL.

        Returns:
            The response: status, headers, text and url.

        Raises:
            HTTPToolError: The request was refused or failed, or a limit was exceeded.
        """
        if params is not None and (
            not isinstance(params, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
        ):
            raise HTTPToolError("params must be a dict from strings to strings")
        target = self._check_url(url)
        if params:
            target = target.copy_merge_params(params)
        return self._send("GET", target, None)

    def http_post(self, url: str, json_body: dict[str, Any] | None = None) -> HttpResponse:
        """Send an HTTP POST request with a JSON object as body to an allowed host and return the response.

        The result is a dict with status (int), headers (a few lower-cased response headers), text (the body)
        and url (the final URL). Same rules as http_get: allowed hosts only, redirects to other hosts refused,
        authentication added automatically, non-2xx responses returned, oversized responses and timeouts are
        errors.

        Args:
            url: Absolute http:// or https:// URL on an allowed host.
            json_body: JSON object sent as the request body (Content-Type: application/json).

        Returns:
            The response: status, headers, text and url.

        Raises:
            HTTPToolError: The request was refused or failed, or a limit was exceeded.
        """
        if json_body is not None and not isinstance(json_body, dict):
            raise HTTPToolError("json_body must be a JSON object (dict)")
        target = self._check_url(url)
        body = b""
        if json_body is not None:
            try:
                body = json.dumps(json_body, allow_nan=False, separators=(",", ":")).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise HTTPToolError(f"json_body is not JSON-serializable: {exc}") from None
        if len(body) > self.max_bytes:
            raise HTTPToolError(f"the request body is larger than {self.max_bytes} bytes")
        return self._send("POST", target, body if json_body is not None else None)

    def describe(self, method: str) -> str:
        """The tool description of `method` ("http_get" or "http_post"), listing the allowed hosts."""
        return f"{tool_description(getattr(self, method))} Allowed hosts: {', '.join(sorted(self.allowed_hosts))}."

    # -------------------------------------------------------------- internals

    def _check_url(self, url: Any) -> httpx.URL:
        """Parse `url` and make sure it may be requested; raises `HTTPToolError` otherwise."""
        if not isinstance(url, str | httpx.URL):
            raise HTTPToolError("url must be a string")
        if len(str(url)) > MAX_URL_CHARS:
            raise HTTPToolError(f"the URL is too long (at most {MAX_URL_CHARS} characters)")
        try:
            parsed = httpx.URL(url)
            host = parsed.raw_host.decode("ascii").lower()
        except (httpx.InvalidURL, ValueError) as exc:
            raise HTTPToolError(f"invalid URL: {exc}") from None
        if parsed.scheme not in _DEFAULT_PORTS:
            raise HTTPToolError(f"only http:// and https:// URLs are allowed, not {parsed.scheme or 'relative'!r} URLs")
        if not host:
            raise HTTPToolError("the URL has no host")
        if parsed.userinfo:
            raise HTTPToolError("credentials in the URL (user:password@) are not allowed")
        port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[parsed.scheme]
        if not any(_origin_matches(o, parsed.scheme, host, port) for o in self._origins.values()):
            shown = host if parsed.port is None else f"{host}:{parsed.port}"
            allowed = ", ".join(sorted(self.allowed_hosts))
            raise HTTPToolError(f"host {shown!r} is not allowed over {parsed.scheme} (allowed: {allowed})")
        return parsed.copy_with(fragment=None)

    def _headers_for(self, url: httpx.URL) -> dict[str, str]:
        host = url.raw_host.decode("ascii").lower()
        port = url.port if url.port is not None else _DEFAULT_PORTS[url.scheme]
        headers: dict[str, str] = {}
        for origin, extra in self._headers:
            if _origin_matches(origin, url.scheme, host, port):
                headers.update(extra)
        return headers

    def _secret_strings(self) -> list[str]:
        secrets: set[str] = set()
        for _, headers in self._headers:
            for name, value in headers.items():
                if not is_credential_header(name):
                    continue
                if value.strip():
                    secrets.add(value.strip())
                secrets.update(part for part in value.split() if len(part) >= _MIN_SECRET_TOKEN)
        return sorted(secrets, key=len, reverse=True)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def _send(self, method: str, url: httpx.URL, body: bytes | None) -> HttpResponse:
        deadline = time.monotonic() + self.timeout_s
        for _hop in range(self.max_redirects + 1):
            status, headers, content, final = self._request(method, url, body, deadline)
            location = headers.get("location")
            if status not in _REDIRECT_STATUSES or location is None or self.max_redirects == 0:
                break
            try:
                next_url = url.join(location)
            except (httpx.InvalidURL, ValueError):
                raise HTTPToolError(f"the server sent an invalid redirect location ({status})") from None
            try:
                url = self._check_url(next_url)
            except HTTPToolError as exc:
                raise HTTPToolError(f"refused to follow a {status} redirect: {exc}") from None
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
        else:
            raise HTTPToolError(f"too many redirects (more than {self.max_redirects})")
        encoding = _charset(headers.get("content-type", "")) or "utf-8"
        try:
            text = content.decode(encoding, "replace")
        except LookupError:
            text = content.decode("utf-8", "replace")
        return HttpResponse(
            status=status,
            headers={k: self._redact(v) for k, v in headers.items() if k in SAFE_RESPONSE_HEADERS},
            text=self._redact(text),
            url=self._redact(str(final)),
        )

    def _request(
        self, method: str, url: httpx.URL, body: bytes | None, deadline: float
    ) -> tuple[int, dict[str, str], bytes, httpx.URL]:
        """One hop: send, stream the body under the caps; return (status, headers, body, url)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HTTPToolError(self._timeout_message(url))
        headers = self._headers_for(url)
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self._client.build_request(
            method, url, headers=headers, content=body, timeout=httpx.Timeout(remaining)
        )
        try:
            response = self._client.send(request, stream=True)
            try:
                resp_headers = {k.lower(): v for k, v in response.headers.items()}
                if response.status_code in _REDIRECT_STATUSES and "location" in resp_headers:
                    return response.status_code, resp_headers, b"", url  # the body of a redirect is not read
                declared = resp_headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise HTTPToolError(self._too_large_message(url))
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise HTTPToolError(self._too_large_message(url))
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise HTTPToolError(self._timeout_message(url))
                return response.status_code, resp_headers, b"".join(chunks), url
            finally:
                response.close()
        except httpx.TimeoutException:
            raise HTTPToolError(self._timeout_message(url)) from None
        except httpx.ConnectError as exc:
            raise HTTPToolError(f"could not connect to {_where(url)}: {self._redact(str(exc))}") from None
        except httpx.HTTPError as exc:
            raise HTTPToolError(
                f"request to {_where(url)} failed: {type(exc).__name__}: {self._redact(str(exc))}"
            ) from None

    def _timeout_message(self, url: httpx.URL) -> str:
        return f"request to {_where(url)} timed out (time limit {self.timeout_s:g} s)"

    def _too_large_message(self, url: httpx.URL) -> str:
        return f"the response from {_where(url)} is larger than {self.max_bytes} bytes; request less data"


def _where(url: httpx.URL) -> str:
    host = url.raw_host.decode("ascii")
    return host if url.port is None else f"{host}:{url.port}"


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return None


def register(registry: Any, client: AllowListedHTTP) -> AllowListedHTTP:
    """Register `AllowListedHTTP.http_get` and `.http_post` as the tools ``http_get`` and ``http_post``.

    Args:
        registry: The tool registry (anything with ``tool(name=..., timeout_s=...)``).
        client: The configured `AllowListedHTTP`.

    Returns:
        `client`, for chaining.
    """
    # A backstop for the registry; the client's own deadline fires first with a clearer message.
    backstop = 2 * client.timeout_s + 5.0
    registry.tool(name="http_get", description=client.describe("http_get"), timeout_s=backstop)(client.http_get)
    registry.tool(name="http_post", description=client.describe("http_post"), timeout_s=backstop)(client.http_post)
    return client
