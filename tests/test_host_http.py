"""The allow-listed HTTP host functions (`host_functions.http.AllowListedHTTP`) against real local servers.

Every server here listens on 127.0.0.1 with an ephemeral port; nothing leaves the machine.
"""

from __future__ import annotations

import gzip
import inspect
import json
import re
import threading
import time
import typing
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pydantic
import pytest
from conftest import RecordingRegistry
from hypothesis import given, settings
from hypothesis import strategies as st

from host_functions.http import SAFE_RESPONSE_HEADERS, AllowListedHTTP, HTTPToolError, is_credential_header, register

SECRET = "Bearer s3cr3t-t0ken-value-42"
API_KEY = "key-0123456789abcdef"


@dataclass
class Seen:
    """What one test server observed."""

    connections: int = 0
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _record(self, body: bytes) -> None:
        with self.server.seen.lock:
            self.server.seen.requests.append((self.command, self.path, dict(self.headers.items()), body))

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, *, length: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._handle(body)

    def _handle(self, body: bytes) -> None:
        self._record(body)
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/hello":
            self._send(
                200,
                b"hello",
                {
                    "Content-Type": "text/plain; charset=utf-8",
                    "Set-Cookie": "session=abc; Path=/",
                    "X-Internal-Token": "server-side-secret",
                    "ETag": '"v1"',
                },
            )
        elif url.path == "/echo":
            payload = {
                "method": self.command,
                "query": query,
                "headers": dict(self.headers.items()),
                "body": body.decode("utf-8", "replace"),
            }
            self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        elif url.path == "/echo-header":
            self._send(200, b"ok", {"Content-Type": "text/plain", "X-Echo": self.headers.get("Authorization", "")})
        elif url.path == "/echo-in-location":
            # A redirect status without Location is returned as is; with one, the location carries the secret.
            self._send(200, b"ok", {"Location": f"/hello?auth={self.headers.get('Authorization', '')}"})
        elif url.path == "/redirect":
            self._send(int(query.get("code", "302")), b"", {"Location": query["to"]})
        elif url.path == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        elif url.path == "/status":
            self._send(int(query["code"]), b"nope", {"Content-Type": "text/plain"})
        elif url.path == "/big":
            self._send(200, b"x" * int(query["n"]), {"Content-Type": "text/plain"})
        elif url.path == "/big-unsized":
            self._send(200, b"y" * int(query["n"]), {"Content-Type": "text/plain"}, length=False)
        elif url.path == "/gzip-bomb":
            packed = gzip.compress(b"\0" * 5_000_000)
            self._send(200, packed, {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
        elif url.path == "/latin1":
            self._send(200, "café".encode("latin-1"), {"Content-Type": "text/plain; charset=latin-1"})
        elif url.path == "/slow":
            time.sleep(float(query["delay"]))
            self._send(200, b"late", {"Content-Type": "text/plain"})
        elif url.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for _ in range(100):
                    self.wfile.write(b"d")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        else:
            self._send(404, b"not found", {"Content-Type": "text/plain"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen = Seen()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up early (timeouts, size caps) make writes fail; that is expected

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.seen.lock:
            self.seen.connections += 1
        return True

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def make_server() -> Iterator[Callable[[], _Server]]:
    servers: list[_Server] = []

    def start() -> _Server:
        server = _Server()
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(make_server: Callable[[], _Server]) -> _Server:
    return make_server()


@pytest.fixture
def client(server: _Server) -> Iterator[AllowListedHTTP]:
    entry = f"127.0.0.1:{server.port}"
    with AllowListedHTTP(
        {entry}, headers_by_host={entry: {"Authorization": SECRET, "X-Api-Key": API_KEY}}, timeout_s=5.0
    ) as http:
        yield http


# ------------------------------------------------------------------ allowed requests


def test_get(server: _Server, client: AllowListedHTTP) -> None:
    response = client.http_get(server.url("/hello"))
    assert response["status"] == 200
    assert response["text"] == "hello"
    assert response["url"] == server.url("/hello")
    assert response["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert response["headers"]["etag"] == '"v1"'
    # Only the harmless headers come back.
    assert set(response["headers"]) <= SAFE_RESPONSE_HEADERS
    assert "set-cookie" not in response["headers"]
    assert "x-internal-token" not in response["headers"]


def test_get_with_params(server: _Server, client: AllowListedHTTP) -> None:
    response = client.http_get(server.url("/echo?a=1"), params={"q": "two words", "x": "é&="})
    assert json.loads(response["text"])["query"] == {"a": "1", "q": "two words", "x": "é&="}


def test_post_json(server: _Server, client: AllowListedHTTP) -> None:
    response = client.http_post(server.url("/echo"), json_body={"n": 1, "items": ["a", None], "nested": {"ok": True}})
    assert response["status"] == 200
    echoed = json.loads(response["text"])
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"n": 1, "items": ["a", None], "nested": {"ok": True}}
    assert echoed["headers"]["Content-Type"] == "application/json"


def test_post_without_body(server: _Server, client: AllowListedHTTP) -> None:
    response = client.http_post(server.url("/echo"))
    assert json.loads(response["text"])["body"] == ""


def test_non_2xx_is_returned_not_raised(server: _Server, client: AllowListedHTTP) -> None:
    assert client.http_get(server.url("/status?code=404"))["status"] == 404
    response = client.http_get(server.url("/status?code=500"))
    assert (response["status"], response["text"]) == (500, "nope")


def test_charset_is_honoured(server: _Server, client: AllowListedHTTP) -> None:
    assert client.http_get(server.url("/latin1"))["text"] == "café"


def test_fragment_is_not_sent(server: _Server, client: AllowListedHTTP) -> None:
    client.http_get(server.url("/hello#frag"))
    assert server.seen.requests[-1][1] == "/hello"


# ------------------------------------------------------------------ credentials


def test_injected_headers_reach_the_server_but_not_the_guest(server: _Server, client: AllowListedHTTP) -> None:
    response = client.http_get(server.url("/echo"))
    _, _, headers, _ = server.seen.requests[-1]
    assert headers["Authorization"] == SECRET
    assert headers["X-Api-Key"] == API_KEY
    # The server echoed them in the body: the guest sees them redacted.
    assert "s3cr3t-t0ken-value-42" not in response["text"]
    assert API_KEY not in response["text"]
    echoed = json.loads(response["text"])["headers"]
    assert echoed["Authorization"] == "[REDACTED]"
    assert echoed["X-Api-Key"] == "[REDACTED]"
    assert "authorization" not in {k.lower() for k in response["headers"]}


def test_credentials_echoed_in_headers_are_not_returned(server: _Server, client: AllowListedHTTP) -> None:
    response = client.http_get(server.url("/echo-header"))
    assert "x-echo" not in response["headers"]
    assert SECRET not in json.dumps(response)
    response = client.http_get(server.url("/echo-in-location"))
    assert "s3cr3t-t0ken-value-42" not in response["headers"]["location"]
    assert "[REDACTED]" in response["headers"]["location"]


def test_only_credential_headers_are_redacted(server: _Server) -> None:
    entry = f"127.0.0.1:{server.port}"
    headers = {"Accept": "application/json", "X-Client": "wasmrun-test-client", "X-Auth-Token": "tok-abcdefgh"}
    with AllowListedHTTP({entry}, headers_by_host={entry: headers}) as http:
        response = http.http_get(server.url("/echo"))
    echoed = json.loads(response["text"])["headers"]
    assert echoed["Accept"] == "application/json"
    assert echoed["X-Client"] == "wasmrun-test-client"
    assert echoed["X-Auth-Token"] == "[REDACTED]"
    assert response["headers"]["content-type"] == "application/json"
    assert [is_credential_header(h) for h in ("Authorization", "X-API-Key", "Cookie", "Accept", "User-Agent")] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_guest_cannot_smuggle_credentials_in_the_url(server: _Server, client: AllowListedHTTP) -> None:
    with pytest.raises(HTTPToolError, match="credentials in the URL"):
        client.http_get(f"http://user:pw@127.0.0.1:{server.port}/hello")
    assert server.seen.connections == 0


def test_credentials_are_only_sent_to_their_host(make_server: Callable[[], _Server]) -> None:
    a, b = make_server(), make_server()
    entry_a, entry_b = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
    with AllowListedHTTP({entry_a, entry_b}, headers_by_host={entry_a: {"Authorization": SECRET}}) as http:
        http.http_get(b.url("/hello"))
        assert "Authorization" not in b.seen.requests[-1][2]
        # Also on a redirect from the host with credentials to the one without.
        response = http.http_get(a.url(f"/redirect?to={b.url('/echo')}"))
        assert response["status"] == 200
        assert response["url"] == b.url("/echo")
        assert a.seen.requests[-1][2]["Authorization"] == SECRET
        assert "Authorization" not in b.seen.requests[-1][2]


def test_no_cookies_are_kept_between_calls(server: _Server, client: AllowListedHTTP) -> None:
    client.http_get(server.url("/hello"))  # sets a cookie
    client.http_get(server.url("/echo"))
    assert "Cookie" not in server.seen.requests[-1][2]


def test_repr_hides_credentials(client: AllowListedHTTP) -> None:
    assert SECRET not in repr(client)
    assert API_KEY not in repr(client)


# ------------------------------------------------------------------ refused without connecting


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:{port}/hello", "host 'localhost:{port}' is not allowed"),
        ("http://127.0.0.2:{port}/hello", "is not allowed"),
        ("http://127.0.0.1/hello", "host '127.0.0.1' is not allowed"),  # default port not listed
        ("http://127.0.0.1:{other}/hello", "is not allowed"),
        ("https://example.com/", "is not allowed"),
        ("http://127.0.0.1:{port}.evil.com/", "invalid URL|is not allowed"),
        ("http://evil.com/?u=http://127.0.0.1:{port}/", "is not allowed"),
        ("ftp://127.0.0.1:{port}/file", "only http:// and https://"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("/relative/path", "only http:// and https://"),
        ("127.0.0.1:{port}/hello", "only http:// and https://|is not allowed|invalid URL"),
        ("http://[::1]:{port}/", "is not allowed"),
        ("http:///nohost", "invalid URL|no host"),
        ("not a url at all", "only http:// and https://|invalid URL"),
    ],
)
def test_refused_without_connecting(server: _Server, client: AllowListedHTTP, url: str, message: str) -> None:
    fill = {"port": server.port, "other": server.port + 1 if server.port < 65535 else server.port - 1}
    with pytest.raises(HTTPToolError, match=message.format(**fill)):
        client.http_get(url.format(**fill))
    with pytest.raises(HTTPToolError):
        client.http_post(url.format(**fill), json_body={"a": 1})
    assert server.seen.connections == 0


def test_bare_host_entry_admits_only_the_default_port(server: _Server) -> None:
    with AllowListedHTTP({"127.0.0.1"}) as http:
        with pytest.raises(HTTPToolError, match="not allowed"):
            http.http_get(server.url("/hello"))
    assert server.seen.connections == 0


def test_scheme_restricted_entry(server: _Server) -> None:
    with AllowListedHTTP({f"https://127.0.0.1:{server.port}"}) as http:
        with pytest.raises(HTTPToolError, match="not allowed over http"):
            http.http_get(server.url("/hello"))
    assert server.seen.connections == 0
    with AllowListedHTTP({f"http://127.0.0.1:{server.port}"}) as http:
        assert http.http_get(server.url("/hello"))["text"] == "hello"


def test_host_names_are_case_insensitive(server: _Server) -> None:
    with AllowListedHTTP({f"LOCALHOST:{server.port}"}) as http:
        assert http.http_get(f"http://LocalHost:{server.port}/hello")["status"] == 200


@pytest.mark.parametrize(
    "entries",
    [{"ftp://example.com"}, {"example.com/path"}, {"user@example.com"}, {"example.com:notaport"}, {""}],
)
def test_bad_allow_list_entries(entries: set[str]) -> None:
    with pytest.raises(ValueError):
        AllowListedHTTP(entries)


def test_headers_must_belong_to_allowed_hosts() -> None:
    with pytest.raises(ValueError, match="not in allowed_hosts"):
        AllowListedHTTP({"a.example"}, headers_by_host={"b.example": {"Authorization": "x"}})


def test_allowed_hosts_must_be_a_set_not_a_string() -> None:
    with pytest.raises(TypeError):
        AllowListedHTTP("example.com")  # type: ignore[arg-type]


# ------------------------------------------------------------------ redirects


def test_redirect_to_allowed_host_is_followed(server: _Server, client: AllowListedHTTP) -> None:
    response = client.http_get(server.url("/redirect?to=/hello"))
    assert (response["status"], response["text"], response["url"]) == (200, "hello", server.url("/hello"))


def test_redirect_to_non_allowed_host_is_refused(make_server: Callable[[], _Server]) -> None:
    allowed, other = make_server(), make_server()
    with AllowListedHTTP({f"127.0.0.1:{allowed.port}"}, headers_by_host=None) as http:
        for target in (other.url("/hello"), other.url("/hello", host="localhost"), "http://example.com/"):
            with pytest.raises(HTTPToolError, match=r"refused to follow a 302 redirect: host .* is not allowed"):
                http.http_get(allowed.url(f"/redirect?to={target}"))
        with pytest.raises(HTTPToolError, match="refused to follow a 301 redirect"):
            http.http_get(allowed.url(f"/redirect?code=301&to={other.url('/hello', host='localhost')}"))
        with pytest.raises(HTTPToolError, match="refused to follow a 307 redirect"):
            http.http_post(allowed.url(f"/redirect?code=307&to={other.url('/echo')}"), json_body={"a": 1})
        with pytest.raises(HTTPToolError, match="refused to follow a 302 redirect: only http"):
            http.http_get(allowed.url("/redirect?to=file:///etc/passwd"))
    assert other.seen.connections == 0


def test_redirect_methods(server: _Server, client: AllowListedHTTP) -> None:
    for code, method, body in ((303, "GET", ""), (302, "GET", ""), (307, "POST", '{"a":1}'), (308, "POST", '{"a":1}')):
        response = client.http_post(server.url(f"/redirect?code={code}&to=/echo"), json_body={"a": 1})
        echoed = json.loads(response["text"])
        assert (echoed["method"], echoed["body"]) == (method, body), code


def test_redirect_loop(server: _Server, client: AllowListedHTTP) -> None:
    with pytest.raises(HTTPToolError, match="too many redirects"):
        client.http_get(server.url("/loop"))
    assert len(server.seen.requests) == client.max_redirects + 1


def test_redirects_can_be_returned_instead_of_followed(server: _Server) -> None:
    with AllowListedHTTP({f"127.0.0.1:{server.port}"}, max_redirects=0) as http:
        response = http.http_get(server.url("/redirect?to=http://example.com/"))
    assert response["status"] == 302
    assert response["headers"]["location"] == "http://example.com/"


# ------------------------------------------------------------------ size and time caps


def test_response_size_cap(server: _Server) -> None:
    with AllowListedHTTP({f"127.0.0.1:{server.port}"}, max_bytes=1000) as http:
        assert len(http.http_get(server.url("/big?n=1000"))["text"]) == 1000
        with pytest.raises(HTTPToolError, match="larger than 1000 bytes"):
            http.http_get(server.url("/big?n=1001"))  # refused on Content-Length
        with pytest.raises(HTTPToolError, match="larger than 1000 bytes"):
            http.http_get(server.url("/big-unsized?n=50000"))  # refused while streaming
        assert len(http.http_get(server.url("/big-unsized?n=999"))["text"]) == 999
        with pytest.raises(HTTPToolError, match="larger than 1000 bytes"):
            http.http_get(server.url("/gzip-bomb"))  # counted after decompression


def test_request_body_size_cap(server: _Server) -> None:
    with AllowListedHTTP({f"127.0.0.1:{server.port}"}, max_bytes=100) as http:
        with pytest.raises(HTTPToolError, match="request body is larger"):
            http.http_post(server.url("/echo"), json_body={"x": "y" * 200})
    assert server.seen.connections == 0


def test_timeout_waiting_for_the_response(server: _Server) -> None:
    with AllowListedHTTP({f"127.0.0.1:{server.port}"}, timeout_s=0.5) as http:
        start = time.monotonic()
        with pytest.raises(HTTPToolError, match=r"timed out \(time limit 0.5 s\)"):
            http.http_get(server.url("/slow?delay=3"))
        assert time.monotonic() - start < 2.0


def test_timeout_of_a_trickling_body(server: _Server) -> None:
    with AllowListedHTTP({f"127.0.0.1:{server.port}"}, timeout_s=1.0) as http:
        start = time.monotonic()
        with pytest.raises(HTTPToolError, match="timed out"):
            http.http_get(server.url("/drip"))  # a byte every 0.1 s for 10 s: no read ever times out
        assert time.monotonic() - start < 3.0


def test_connection_refused(server: _Server) -> None:
    closed = _Server()  # bind a port, then close it so nothing listens there
    port = closed.port
    closed.server_close()
    with AllowListedHTTP({f"127.0.0.1:{port}"}, timeout_s=2.0) as http:
        with pytest.raises(HTTPToolError, match="could not connect"):
            http.http_get(f"http://127.0.0.1:{port}/")


# ------------------------------------------------------------------ input validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h, u: h.http_get(u, params={"a": 1}), "params must be"),
        (lambda h, u: h.http_get(u, params=["a"]), "params must be"),
        (lambda h, u: h.http_get(123), "url must be a string"),
        (lambda h, u: h.http_get("http://" + "a" * 9000 + ".com/"), "too long"),
        (lambda h, u: h.http_post(u, json_body=[1, 2]), "JSON object"),
        (lambda h, u: h.http_post(u, json_body={"x": float("nan")}), "not JSON-serializable"),
        (lambda h, u: h.http_post(u, json_body={"x": object()}), "not JSON-serializable"),
    ],
)
def test_bad_arguments(server: _Server, client: AllowListedHTTP, call: Callable[..., Any], message: str) -> None:
    with pytest.raises(HTTPToolError, match=message):
        call(client, server.url("/echo"))
    assert server.seen.connections == 0


def test_http_tool_error_is_a_value_error() -> None:
    assert issubclass(HTTPToolError, ValueError)


# ------------------------------------------------------------------ transport, threads, registration


def test_custom_transport() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True}, headers={"X-Secret": "no"})

    with AllowListedHTTP(
        {"api.example.com"},
        headers_by_host={"api.example.com": {"X-Api-Key": API_KEY}},
        transport=httpx.MockTransport(handler),
    ) as http:
        response = http.http_get("https://api.example.com/v1/things", params={"page": "2"})
        with pytest.raises(HTTPToolError, match="not allowed"):
            http.http_get("https://api.example.com.evil.com/")
        with pytest.raises(HTTPToolError, match="not allowed"):
            http.http_get("https://sub.api.example.com/")
    assert json.loads(response["text"]) == {"ok": True}
    assert "x-secret" not in response["headers"]
    assert len(seen) == 1
    assert str(seen[0].url) == "https://api.example.com/v1/things?page=2"
    assert seen[0].headers["X-Api-Key"] == API_KEY


def test_concurrent_requests(server: _Server, client: AllowListedHTTP) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: client.http_get(server.url("/echo"), params={"i": str(i)}), range(40)))
    assert [json.loads(r["text"])["query"]["i"] for r in results] == [str(i) for i in range(40)]


def test_register(server: _Server, client: AllowListedHTTP) -> None:
    registry = RecordingRegistry()
    assert register(registry, client) is client
    assert set(registry.tools) == {"http_get", "http_post"}
    assert registry.tools["http_get"][1]["timeout_s"] > client.timeout_s
    assert registry.tools["http_get"][0](server.url("/hello"))["text"] == "hello"


def test_tools_are_registry_ready(client: AllowListedHTTP) -> None:
    """What the registry derives from a tool: resolvable hints, buildable schemas, documented parameters."""

    for func in (client.http_get, client.http_post):
        hints = typing.get_type_hints(func, include_extras=True)
        params = inspect.signature(func).parameters
        fields: dict[str, Any] = {
            n: (hints[n], ... if p.default is inspect.Parameter.empty else p.default) for n, p in params.items()
        }
        pydantic.create_model(f"{func.__name__}_args", **fields).model_json_schema()
        assert set(pydantic.TypeAdapter(hints["return"]).json_schema()["properties"]) == {
            "status",
            "headers",
            "text",
            "url",
        }
        doc = inspect.getdoc(func) or ""
        args = re.search(r"^Args:\n((?:    .*\n?)+)", doc, re.MULTILINE)
        assert args is not None
        assert set(re.findall(r"^    (\w+):", args.group(1), re.MULTILINE)) == set(params)
    assert "Allowed hosts: 127.0.0.1:" in client.describe("http_get")


# ------------------------------------------------------------------ property: only allowed hosts are contacted

_URL_PARTS = st.tuples(
    st.sampled_from(
        ["http://", "https://", "HTTPS://", "ftp://", "//", "", "https:", "https:/", "file://", "javascript:"]
    ),
    st.sampled_from(["", "user@", "user:pw@", "api.example.com@", "api.example.com\\@", ":@"]),
    st.sampled_from(
        [
            "api.example.com",
            "API.Example.Com",
            "api.example.com.",
            "evil.com",
            "api.example.com.evil.com",
            "evilapi.example.com",
            "sub.api.example.com",
            "\u0430pi.example.com",  # Cyrillic a
            "127.0.0.1",
            "localhost",
            "[::1]",
            "api.example.com%2f",
            "api%2eexample.com",
            "",
            "api.example.com#",
            "api.example.com?",
        ]
    ),
    st.sampled_from(["", ":443", ":80", ":8443", ":0443", ":", ":99999", ":-1"]),
    st.sampled_from(["", "/", "/path", "/x?y=1", "#@evil.com", "?@evil.com", "/@evil.com", "\\@evil.com/"]),
)


@settings(max_examples=400, deadline=None)
@given(url=st.one_of(_URL_PARTS.map("".join), st.text(max_size=80)), use_post=st.booleans())
def test_only_allowed_hosts_are_ever_contacted(url: str, use_post: bool) -> None:
    contacted: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        contacted.append(request.url)
        return httpx.Response(200, text="ok")

    http = AllowListedHTTP({"https://api.example.com"}, transport=httpx.MockTransport(handler))
    try:
        if use_post:
            http.http_post(url, json_body={"a": 1})
        else:
            http.http_get(url, params={"q": url})
    except HTTPToolError:
        pass
    finally:
        http.close()
    for target in contacted:
        assert (target.scheme, target.host, target.port) == ("https", "api.example.com", None), url
