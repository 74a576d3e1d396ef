"""The delivery HTTP client and the address policy, against real sockets on 127.0.0.1.

The client is the event loop's (``AsyncDeliveryClient``), called from the test's thread
through :class:`~tests.helpers.OnTheLoop` as a worker thread hands a send to the loop.

Every listener is a thread in this process bound to 127.0.0.1. The autouse
``loopback_only`` fixture makes any attempt to connect elsewhere fail the test, so the
SSRF tests can use hostile addresses without ever sending a packet off the machine:
for those, the refusal has to happen before connecting.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rest_hooks.delivery.async_http import AsyncDeliveryClient
from rest_hooks.delivery.http import DeliveryError, HttpOptions
from rest_hooks.delivery.resolver import resolve_host
from rest_hooks.security.network import AddressPolicy, IPAddress, TargetRefused, check_url
from tests.helpers import OnTheLoop, RawListener, wait_until

pytestmark = pytest.mark.timeout(30)

LOOPBACK_ONLY = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
DRIP_INTERVAL = 0.25  # seconds between bytes: far below the read timeout used with it
HUGE = 10 * 1024 * 1024
BIG = bytes(range(256)) * 1200  # 300 KiB: many TLS records, more than one recv()


# -- safety net ------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    ip = ipaddress.ip_address(host.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail loudly on any connect() to a non-loopback address; record every connect()."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        attempts.append(address)
        if isinstance(address, tuple) and not _is_loopback(str(address[0])):
            raise AssertionError(f"test tried to connect to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return attempts


# -- listeners -------------------------------------------------------------------------------------


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Listener:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records what reaches it."""

    server: http.server.ThreadingHTTPServer
    stop: threading.Event
    requests: list[Recorded] = field(default_factory=list)
    connections: int = 0
    closed: int = 0  # connections that ended (either side closed them)
    sni: list[str | None] = field(default_factory=list)
    redirect_to: str = ""

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/ok", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    listener: Listener

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Receivers whose client hung up (truncation, timeouts) are expected here."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.listener.connections += 1

    def finish(self) -> None:
        super().finish()
        self.server.listener.closed += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        listener = self.server.listener
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        listener.requests.append(Recorded(self.path, dict(self.headers.items()), body))
        if self.path == "/ok":
            self._reply(200, b'{"ok": true}', [("Content-Type", "application/json")])
        elif self.path == "/500":
            self._reply(500, b"boom")
        elif self.path == "/redirect":
            self._reply(302, b"", [("Location", listener.redirect_to)])
        elif self.path == "/cookie":
            self._reply(200, b"", [("Set-Cookie", "session=abc; Path=/")])
        elif self.path == "/then-hang-up":
            # Closes the connection after answering, without saying so.
            self._reply(200)
            self.close_connection = True
        elif self.path == "/big":
            self._reply(200, BIG)
        elif self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(HUGE))
            self.end_headers()
            chunk = b"x" * 65536
            for _ in range(HUGE // len(chunk)):
                if listener.stop.is_set():
                    return
                self.wfile.write(chunk)
        elif self.path == "/drip-body":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.flush()
            while not listener.stop.wait(DRIP_INTERVAL):
                self.wfile.write(b".")
                self.wfile.flush()
        else:
            self._reply(404)


def _start(server: http.server.ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return thread


@pytest.fixture
def make_listener() -> Iterator[Callable[..., Listener]]:
    started: list[tuple[Listener, threading.Thread]] = []

    def make(tls: ssl.SSLContext | None = None) -> Listener:
        server = _Server(("127.0.0.1", 0), _Handler)
        listener = Listener(server=server, stop=threading.Event())
        server.listener = listener
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: listener.sni.append(name)
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        started.append((listener, _start(server)))
        return listener

    yield make
    for listener, thread in started:
        listener.stop.set()
        listener.server.shutdown()
        listener.server.server_close()
        thread.join(timeout=2)


@pytest.fixture
def listener(make_listener: Callable[..., Listener]) -> Listener:
    return make_listener()


def _drip_headers(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    while not stop.wait(DRIP_INTERVAL):
        conn.sendall(b"a")


def _silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accept, never read, never answer."""
    stop.wait(10)


# -- clients ---------------------------------------------------------------------------------------


def fake_resolver(names: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    """Resolve the given names from the table, anything else with the real resolver."""

    def resolve(host: str, port: int) -> list[IPAddress]:
        if calls is not None:
            calls.append(host)
        if host in names:
            return [ipaddress.ip_address(a) for a in names[host]]
        return resolve_host(host, port)

    return resolve


MakeClient: TypeAlias = Callable[..., OnTheLoop]


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """Delivery clients on the process's event loop, closed after the test."""
    clients: list[OnTheLoop] = []

    def make(resolver: Any = None, **options: Any) -> OnTheLoop:
        options.setdefault("policy", LOOPBACK_ONLY)
        client = OnTheLoop(AsyncDeliveryClient(HttpOptions(**options), resolver=resolver))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def post(client: OnTheLoop, url: str, body: bytes = b"{}") -> Any:
    return client.post(url, body, {"Content-Type": "application/json"})


def expect_error(client: OnTheLoop, url: str, body: bytes = b"{}") -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        post(client, url, body)
    return info.value


# -- plain HTTP behaviour --------------------------------------------------------------------------


def test_2xx_with_body(make_client: MakeClient, listener: Listener) -> None:
    client = make_client(user_agent="hooks-test/1")
    result = client.post(listener.url(), b'{"event": 1}', {"X-Hook-Event": "book.added"})
    assert result.status_code == 200
    assert result.ok
    assert result.body == b'{"ok": true}'
    assert result.headers["content-type"] == "application/json"
    assert not result.truncated
    assert 0 < result.duration < 5
    [request] = listener.requests
    assert request.body == b'{"event": 1}'
    assert request.headers["X-Hook-Event"] == "book.added"
    assert request.headers["User-Agent"] == "hooks-test/1"
    assert request.headers["Accept-Encoding"] == "identity"


def test_the_request_head_carries_the_headers_given_in_their_case_and_no_others(
    make_client: MakeClient, raw_listener: Callable[..., RawListener]
) -> None:
    heads: list[bytes] = []

    def record(conn: socket.socket, stop: threading.Event) -> None:
        heads.append(conn.recv(65536))
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    raw = raw_listener(record)
    headers = {"Content-Type": "application/json", "X-Hook-Signature": "v1,abc"}
    make_client().post(f"http://127.0.0.1:{raw.port}/p?q=1", b"{}", headers)
    [head] = heads
    request_line, *lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
    assert request_line == "POST /p?q=1 HTTP/1.1"
    assert sorted(line.split(":")[0] for line in lines) == [
        "Accept-Encoding",
        "Content-Length",
        "Content-Type",
        "Host",
        "User-Agent",
        "X-Hook-Signature",
    ]


def test_500_is_a_result(make_client: MakeClient, listener: Listener) -> None:
    result = post(make_client(), listener.url("/500"))
    assert (result.status_code, result.body, result.ok) == (500, b"boom", False)


def test_redirect_is_not_followed(
    make_client: MakeClient, make_listener: Callable[..., Listener]
) -> None:
    first, target = make_listener(), make_listener()
    first.redirect_to = target.url("/ok")
    result = post(make_client(), first.url("/redirect"))
    assert result.status_code == 302
    assert result.headers["location"] == target.url("/ok")
    assert target.requests == []
    assert target.connections == 0


def test_huge_body_is_truncated_and_connection_dropped(
    make_client: MakeClient, listener: Listener
) -> None:
    client = make_client(max_response_bytes=1000)
    started = time.monotonic()
    result = post(client, listener.url("/huge"))
    assert time.monotonic() - started < 2
    assert result.status_code == 200
    assert result.body == b"x" * 1000
    assert result.truncated
    # The unread rest must not poison the next request: a new connection is opened.
    assert post(client, listener.url("/ok")).status_code == 200
    assert listener.connections == 2


def test_keep_alive_and_one_resolution_per_connection(
    make_client: MakeClient,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("flags", 0) & socket.AI_NUMERICHOST:  # that one never asks DNS
            looked_up.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    calls: list[str] = []
    client = make_client(resolver=fake_resolver({"hook.test": ["127.0.0.1"]}, calls))
    for _ in range(3):
        assert post(client, listener.url(host="hook.test")).status_code == 200
    assert calls == ["hook.test"]
    assert listener.connections == 1
    # The name went through the injected resolver only; the connect used the IP.
    assert "hook.test" not in looked_up
    assert all(r.headers["Host"] == f"hook.test:{listener.port}" for r in listener.requests)


def test_proxies_in_the_environment_are_ignored(
    make_client: MakeClient,
    make_listener: Callable[..., Listener],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target, proxy = make_listener(), make_listener()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy.url("/"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_client()
    assert post(client, target.url()).status_code == 200
    assert len(target.requests) == 1
    assert proxy.connections == 0


def test_a_name_rebound_to_a_refused_address_is_refused_on_the_next_connection(
    make_client: MakeClient, listener: Listener
) -> None:
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ipaddress.ip_address(a) for a in next(answers)]

    client = make_client(resolver=rebinding)
    assert post(client, listener.url("/then-hang-up", host="rebind.test")).status_code == 200
    wait_until(lambda: listener.closed == 1, "the receiver to hang up", timeout=2.0)
    # A new connection, a new lookup, a new check: the loopback_only fixture fails the
    # test if anything connects to 10.0.0.1.
    error = expect_error(client, listener.url(host="rebind.test"))
    assert error.kind == "refused"
    assert (
        str(error) == "rebind.test resolves to 10.0.0.1: 10.0.0.1 is a private address (RFC 1918)"
    )
    assert calls == ["rebind.test", "rebind.test"]
    assert listener.connections == 1


def test_an_idn_host_is_looked_up_and_sent_in_its_ascii_form(
    make_client: MakeClient, listener: Listener
) -> None:
    calls: list[str] = []
    client = make_client(resolver=fake_resolver({"xn--bcher-kva.test": ["127.0.0.1"]}, calls))
    assert post(client, listener.url(host="bücher.test")).status_code == 200
    assert calls == ["xn--bcher-kva.test"]
    [request] = listener.requests
    assert request.headers["Host"] == f"xn--bcher-kva.test:{listener.port}"


def test_a_literal_ip_is_never_looked_up(make_client: MakeClient, listener: Listener) -> None:
    calls: list[str] = []
    client = make_client(resolver=fake_resolver({}, calls))
    for host in ("127.0.0.1", "2130706433"):  # the legacy spelling goes where it spells
        assert post(client, listener.url(host=host)).status_code == 200
    assert calls == []
    hosts = [request.headers["Host"] for request in listener.requests]
    assert hosts == [f"127.0.0.1:{listener.port}", f"2130706433:{listener.port}"]


def test_urls_of_one_origin_each_send_their_own_path_and_query(
    make_client: MakeClient, listener: Listener
) -> None:
    # The origin is read once for all its URLs; what follows it is each URL's own.
    client = make_client()
    origin = listener.url("", host="2130706433")
    for rest in ("/a", "?q=1", "/b/c?d=é&e", "", "/f#fragment"):
        assert post(client, origin + rest).status_code == 404  # the listener's for these
    paths = [request.path for request in listener.requests]
    assert paths == ["/a", "/?q=1", "/b/c?d=%C3%A9&e", "/", "/f"]
    assert {r.headers["Host"] for r in listener.requests} == {f"2130706433:{listener.port}"}


def test_no_cookies_are_kept(make_client: MakeClient, listener: Listener) -> None:
    client = make_client()
    post(client, listener.url("/cookie"))
    post(client, listener.url("/ok"))
    assert "Cookie" not in listener.requests[1].headers


def test_concurrent_posts_share_one_client(make_client: MakeClient, listener: Listener) -> None:
    """Worker threads hand their sends to the one client on the loop at once; the
    connections it opens go back to be reused, never more than the sends in flight."""
    client = make_client()
    statuses: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                statuses.append(post(client, listener.url()).status_code)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert statuses == [200] * 40
    assert listener.connections <= 8


# -- connections kept alive ------------------------------------------------------------------------


def test_idle_connections_close_after_the_keepalive_expiry(
    make_client: MakeClient, make_listener: Callable[..., Listener]
) -> None:
    a, b = make_listener(), make_listener()
    client = make_client(keepalive_expiry=0.2)
    post(client, a.url())
    post(client, b.url())
    # Nobody asks again: both idle connections are closed, and the next POST opens one.
    wait_until(lambda: (a.closed, b.closed) == (1, 1), "the idle connections to close", timeout=3)
    assert post(client, a.url()).status_code == 200
    assert a.connections == 2


def test_a_connection_the_receiver_closed_is_not_reused(
    make_client: MakeClient, listener: Listener
) -> None:
    client = make_client()
    assert post(client, listener.url("/then-hang-up")).status_code == 200
    wait_until(lambda: listener.closed == 1, "the receiver to hang up", timeout=2.0)
    assert post(client, listener.url()).status_code == 200
    assert listener.connections == 2


def test_requests_beyond_max_connections_wait_for_a_free_one_then_time_out(
    make_client: MakeClient, listener: Listener
) -> None:
    client = make_client(
        max_connections=1, connect_timeout=0.2, pool_timeout=0.3, read_timeout=1, deadline=1.5
    )
    slow = threading.Thread(target=expect_error, args=(client, listener.url("/drip-body")))
    slow.start()
    wait_until(lambda: listener.connections == 1, "the slow request", timeout=2.0)
    error = expect_error(client, listener.url())
    assert error.kind == "timeout"
    assert slow.is_alive()  # it timed out waiting for the slow one's connection
    assert listener.connections == 1  # and never opened one of its own
    slow.join()
    # The slot is free again once the slow attempt has ended.
    assert post(client, listener.url()).status_code == 200


# -- timeouts and the attempt deadline -------------------------------------------------------------


def test_slow_drip_body_stops_at_deadline(make_client: MakeClient, listener: Listener) -> None:
    client = make_client(read_timeout=1.0, deadline=1.5)
    started = time.monotonic()
    error = expect_error(client, listener.url("/drip-body"))
    elapsed = time.monotonic() - started
    assert error.kind == "timeout"
    assert error.retryable
    assert 1.4 <= elapsed < 2.0


def test_slow_drip_headers_stop_at_deadline(
    make_client: MakeClient, raw_listener: Callable[..., RawListener]
) -> None:
    raw = raw_listener(_drip_headers)
    client = make_client(read_timeout=1.0, deadline=1.5)
    started = time.monotonic()
    error = expect_error(client, f"http://127.0.0.1:{raw.port}/")
    elapsed = time.monotonic() - started
    assert error.kind == "timeout"
    assert 1.4 <= elapsed < 2.0


def test_receiver_that_never_answers_times_out(
    make_client: MakeClient, raw_listener: Callable[..., RawListener]
) -> None:
    raw = raw_listener(_silent)
    client = make_client(read_timeout=0.5, deadline=5)
    started = time.monotonic()
    error = expect_error(client, f"http://127.0.0.1:{raw.port}/")
    assert error.kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_receiver_that_never_reads_cannot_stretch_the_write(
    make_client: MakeClient, raw_listener: Callable[..., RawListener]
) -> None:
    raw = raw_listener(_silent)
    client = make_client(deadline=1.0)
    started = time.monotonic()
    error = expect_error(client, f"http://127.0.0.1:{raw.port}/", b"x" * (64 * 1024 * 1024))
    assert error.kind == "timeout"
    assert time.monotonic() - started < 1.6


def test_listener_that_never_accepts_is_a_connect_timeout(
    make_client: MakeClient,
) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        # Fill the accept queue; once a connect times out, the next ones will too.
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(0.2)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.skip("this kernel completes connections beyond the listen backlog")
        client = make_client(connect_timeout=0.5, deadline=5)
        started = time.monotonic()
        error = expect_error(client, f"http://127.0.0.1:{port}/")
        assert error.kind == "timeout"
        assert time.monotonic() - started < 1.5
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_connection_refused_is_connect(make_client: MakeClient) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    error = expect_error(make_client(), f"http://127.0.0.1:{port}/")
    assert error.kind == "connect"
    assert error.retryable


def _not_http(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def _hang_up(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request, close without a word."""
    conn.recv(65536)


def _reset(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request, then reset the connection (RST, not FIN)."""
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [(_not_http, "protocol"), (_hang_up, "protocol"), (_reset, "connect")],
    ids=["not HTTP", "hangs up", "resets"],
)
def test_receivers_that_break_the_exchange(
    make_client: MakeClient,
    raw_listener: Callable[..., RawListener],
    behaviour: Callable[[socket.socket, threading.Event], None],
    kind: str,
) -> None:
    raw = raw_listener(behaviour)
    error = expect_error(make_client(), f"http://127.0.0.1:{raw.port}/")
    assert error.kind == kind
    assert error.retryable
    assert raw.accepted == 1  # a POST is never sent again on a connection of its own


def test_unresolvable_name_is_connect(make_client: MakeClient) -> None:
    def fail(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    error = expect_error(make_client(resolver=fail), "http://nowhere.test/")
    assert error.kind == "connect"
    assert "nowhere.test" in str(error)


def test_slow_resolver_is_bounded(make_client: MakeClient) -> None:
    release = threading.Event()

    def stuck(host: str, port: int) -> list[IPAddress]:
        release.wait(5)
        return [ipaddress.ip_address("127.0.0.1")]

    client = make_client(resolver=stuck, connect_timeout=0.3)
    started = time.monotonic()
    try:
        error = expect_error(client, "http://slow-dns.test/")
    finally:
        release.set()
    assert error.kind == "timeout"
    assert time.monotonic() - started < 1


def test_a_name_no_lookup_can_start_for_is_busy(
    make_client: MakeClient, listener: Listener
) -> None:
    release = threading.Event()

    def hangs_on_one_name(host: str, port: int) -> list[IPAddress]:
        if host == "hang.test":
            release.wait(5)
        return [ipaddress.ip_address("127.0.0.1")]

    client = make_client(resolver=hangs_on_one_name, connect_timeout=0.3, max_lookups=1)
    try:
        assert expect_error(client, "http://hang.test/").kind == "timeout"
        # The lookup of hang.test goes on, holding the only one the client may run.
        error = expect_error(client, listener.url(host="other.test"))
        assert error.kind == "busy"
        assert not error.counts_against_target
        assert listener.requests == []
        assert post(client, listener.url()).status_code == 200  # a literal IP: no lookup
    finally:
        release.set()


# -- TLS: the connection is pinned to the IP, the name is still verified ---------------------------


def _self_signed(name: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_tls_uses_the_host_name_for_sni_and_verification(
    make_client: MakeClient,
    make_listener: Callable[..., Listener],
    tmp_path: Any,
) -> None:
    cert_pem, key_pem = _self_signed("hook.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = make_listener(tls=server_context)
    client_context = ssl.create_default_context(cadata=cert_pem.decode())
    resolver = fake_resolver({"hook.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    client = make_client(resolver=resolver, ssl_context=client_context)

    result = post(client, listener.url(host="hook.test", scheme="https"))
    assert result.status_code == 200
    assert listener.sni == ["hook.test"]

    # Same IP, other name: the certificate does not match it, so no request is sent.
    error = expect_error(client, listener.url(host="other.test", scheme="https"))
    assert error.kind == "connect"
    assert "certificate" in str(error).lower()
    assert len(listener.requests) == 1

    # Large bodies both ways over the same kept-alive TLS connection.
    result = post(client, listener.url("/big", host="hook.test", scheme="https"), BIG * 4)
    assert (result.status_code, result.body, result.truncated) == (200, BIG[: 64 * 1024], True)
    client = make_client(resolver=resolver, ssl_context=client_context, max_response_bytes=len(BIG))
    for _ in range(2):
        result = post(client, listener.url("/big", host="hook.test", scheme="https"), BIG * 4)
        assert (result.status_code, result.body, result.truncated) == (200, BIG, False)
    assert [len(r.body) for r in listener.requests] == [2] + [len(BIG) * 4] * 3
    # One connection a client (the mismatched name never got one): kept alive.
    assert listener.connections == 2


# -- SSRF ------------------------------------------------------------------------------------------

HOSTILE_RESOLVER = fake_resolver(
    {
        "internal.test": ["127.0.0.1"],
        # A public address first: a client that only checks or uses the first one
        # would connect to 8.8.8.8 (and trip the loopback_only safety net).
        "mixed.test": ["8.8.8.8", "127.0.0.1"],
        "metadata.test": ["169.254.169.254"],
        # Loopback first: a client that only checks the first address would reach the
        # listener when 127.0.0.0/8 is allowed.
        "internal-mixed.test": ["127.0.0.1", "10.0.0.1"],
    }
)

HOSTILE_LOOPBACK_HOSTS = [
    "127.0.0.1",
    "localhost",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "0.0.0.0",
    "internal.test",
    "mixed.test",
]

HOSTILE_OTHER_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://100.64.0.1/",
    "http://192.168.1.1/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::1]/",
    "http://224.0.0.1/",
    "http://metadata.test/",
]


@pytest.mark.parametrize("host", HOSTILE_LOOPBACK_HOSTS)
def test_hostile_loopback_targets_are_refused(
    make_client: MakeClient,
    listener: Listener,
    loopback_only: list[Any],
    host: str,
) -> None:
    client = make_client(resolver=HOSTILE_RESOLVER, policy=AddressPolicy())
    error = expect_error(client, f"http://{host}:{listener.port}/ok")
    assert error.kind == "refused"
    assert error.final
    assert listener.requests == []
    assert listener.connections == 0
    assert loopback_only == []


@pytest.mark.parametrize("url", HOSTILE_OTHER_URLS)
def test_hostile_internal_targets_are_refused_before_connecting(
    make_client: MakeClient, loopback_only: list[Any], url: str
) -> None:
    client = make_client(resolver=HOSTILE_RESOLVER, policy=AddressPolicy())
    error = expect_error(client, url)
    assert error.kind == "refused"
    assert isinstance(error.__cause__, TargetRefused)
    assert loopback_only == []


def test_refusal_reasons_are_readable(make_client: MakeClient) -> None:
    client = make_client(resolver=HOSTILE_RESOLVER, policy=AddressPolicy())
    assert str(expect_error(client, "http://127.0.0.1:9/")) == "127.0.0.1 is a loopback address"
    assert str(expect_error(client, "http://metadata.test/")) == (
        "metadata.test resolves to 169.254.169.254: "
        "169.254.169.254 is the cloud metadata service address (link-local)"
    )
    assert "user info" in str(expect_error(client, "http://user:pw@example.test/"))
    assert expect_error(client, "ftp://example.test/").kind == "refused"


def test_allowed_networks_let_the_listener_through(
    make_client: MakeClient, listener: Listener
) -> None:
    client = make_client(resolver=HOSTILE_RESOLVER, policy=LOOPBACK_ONLY)
    assert post(client, listener.url(host="127.0.0.1")).status_code == 200
    assert post(client, listener.url(host="internal.test")).status_code == 200
    # Only 127.0.0.0/8 is opened: IPv6 loopback and other ranges stay closed, and so
    # does a name that also resolves to an address outside it.
    assert expect_error(client, listener.url(host="[::1]")).kind == "refused"
    assert expect_error(client, "http://10.0.0.1/").kind == "refused"
    assert expect_error(client, listener.url(host="internal-mixed.test")).kind == "refused"
    assert len(listener.requests) == 2
    assert listener.connections == 2  # one per origin, none for the refused name


def test_allow_private_allows_loopback(make_client: MakeClient, listener: Listener) -> None:
    client = make_client(policy=AddressPolicy(allow_private=True))
    assert post(client, listener.url(host="localhost")).status_code == 200


# -- AddressPolicy ---------------------------------------------------------------------------------

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "11.0.0.1",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.255",
    "192.169.0.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:82b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]

REFUSED = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",
    "100.100.100.200",
    "100.127.255.255",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.0.1",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.1",
    "192.0.0.9",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.0.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0.0.0.0",
    "::127.0.0.1",
    "::8.8.8.8",
    "64:ff9b::7f00:1",
    "64:ff9b::a00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::808:808",
    "2002:7f00:1::1",
    "2002:a00:1::1",
    "2002:c0a8:101::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",
    "2001:2::1",
    "2001:10::1",
    "2001:db8::1",
    "3fff::1",
    "100::1",
    "fc00::1",
    "fd00:ec2::254",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "5f00::1",
    "4000::1",
]


@pytest.mark.parametrize("address", ALLOWED)
def test_policy_allows_public_unicast(address: str) -> None:
    AddressPolicy().check(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", REFUSED)
def test_policy_refuses_everything_else(address: str) -> None:
    ip = ipaddress.ip_address(address)
    with pytest.raises(TargetRefused) as info:
        AddressPolicy().check(ip)
    assert info.value.address == ip
    assert info.value.reason
    AddressPolicy(allow_private=True).check(ip)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("10.1.2.3", "10.1.2.3 is a private address (RFC 1918)"),
        ("100.64.0.1", "100.64.0.1 is a carrier-grade NAT shared address (RFC 6598)"),
        ("fe80::1", "fe80::1 is a link-local address"),
        (
            "::ffff:127.0.0.1",
            "::ffff:127.0.0.1 is an IPv4-mapped address embedding 127.0.0.1, "
            "which is a loopback address",
        ),
        (
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe is a NAT64 address embedding 169.254.169.254, "
            "which is the cloud metadata service address (link-local)",
        ),
        (
            "2002:c0a8:101::1",
            "2002:c0a8:101::1 is a 6to4 address embedding 192.168.1.1, "
            "which is a private address (RFC 1918)",
        ),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", None),
    ],
)
def test_policy_reasons(address: str, reason: str | None) -> None:
    with pytest.raises(TargetRefused) as info:
        AddressPolicy().check(ipaddress.ip_address(address))
    if reason is not None:
        assert info.value.reason == reason
    assert str(info.value) == info.value.reason


def test_allowed_networks_open_only_those_networks() -> None:
    policy = AddressPolicy.from_settings(allowed_networks=["10.1.0.0/16", "fd12:3456::/32"])
    for allowed in ["10.1.2.3", "::ffff:10.1.2.3", "fd12:3456::1", "8.8.8.8"]:
        assert policy.is_allowed(ipaddress.ip_address(allowed)), allowed
    for refused in ["10.2.0.1", "127.0.0.1", "fd12:3457::1", "169.254.169.254", "::1"]:
        assert not policy.is_allowed(ipaddress.ip_address(refused)), refused


def test_from_settings_rejects_sloppy_networks() -> None:
    with pytest.raises(ValueError, match="host bits"):
        AddressPolicy.from_settings(allowed_networks=["10.1.2.3/16"])


@given(st.ip_addresses(v=4))
def test_mapped_forms_get_the_ipv4_verdict(ip: ipaddress.IPv4Address) -> None:
    policy = AddressPolicy()
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(ip))
    assert policy.is_allowed(mapped) == policy.is_allowed(ip)
    assert policy.is_allowed(nat64) == policy.is_allowed(ip)
    if policy.is_allowed(ip):
        # Never laxer than the standard library's idea of "global".
        assert ip.is_global
        assert not ip.is_multicast


@given(st.ip_addresses(v=6))
def test_allowed_ipv6_is_global_unicast_or_nat64(ip: ipaddress.IPv6Address) -> None:
    if AddressPolicy().is_allowed(ip):
        assert (
            ip in ipaddress.IPv6Network("2000::/3")
            or ip in ipaddress.IPv6Network("64:ff9b::/96")
            or ip.ipv4_mapped is not None
        )
        assert not ip.is_multicast
        assert not ip.is_link_local


# -- check_url -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://example.com:8080/hooks?token=abc",
        "HTTPS://Example.COM/",
        "https://[2001:db8::1]/x",
        "https://bücher.example/hook",
    ],
)
def test_check_url_accepts(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("ftp://example.com/", {}, "scheme must be http or https"),
        ("example.com/hook", {}, "scheme must be http or https"),
        ("javascript:alert(1)", {}, "scheme must be http or https"),
        ("http://example.com/", {"https_only": True}, "must use https"),
        ("https://user:pw@example.com/", {}, "user info"),
        ("https://user@example.com/", {}, "user info"),
        ("https://@example.com/", {}, "user info"),
        ("http:///path", {}, "no host"),
        ("https://", {}, "no host"),
        ("http://:80/", {}, "no host"),
        ("http://example.com/" + "a" * 2100, {}, "longer than 2048"),
        ("http://example.com/abc", {"max_length": 10}, "longer than 10"),
        ("http://exa mple.com/", {}, "whitespace or control"),
        ("http://example.com/\r\nX: y", {}, "whitespace or control"),
        ("http://example.com:99999/", {}, "invalid port"),
        ("http://example.com:0/", {}, "invalid port"),
        ("http://example.com:http/", {}, "invalid port"),
    ],
)
def test_check_url_rejects(url: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_url(url, **kwargs)
