"""Host names that hang in resolution cost only their own deliveries.

The DNS answer is the one thing mocked: a resolver function that answers names from a
table, and hangs on chosen names until the test ends (a ``threading.Event``), as a name
whose DNS server never answers hangs in ``getaddrinfo``. The receiver is real, on
127.0.0.1; the deliveries go through ``deliver_batch`` and the gate (the suite's Redis,
or the memory gate) like a worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from bookstore.models import Book
from bookstore.receiver import Receiver
from rest_hooks.delivery.async_http import AsyncDeliveryClient
from rest_hooks.delivery.flow import BreakerState, origin_of
from rest_hooks.delivery.http import DeliveryError, HttpOptions
from rest_hooks.delivery.resolver import (
    BoundedResolver,
    ResolutionFailed,
    ResolverBusy,
    registered_domain,
)
from rest_hooks.models import Delivery, Hook
from rest_hooks.security.network import AddressPolicy, IPAddress
from rest_hooks.worker import attempt
from rest_hooks.worker.gate import current_gate
from tests.helpers import OnTheLoop, attempts_metric, wait_until

pytestmark = pytest.mark.timeout(60)

#: Short, so that a test waiting for many hanging lookups one after the other is quick.
CONNECT_TIMEOUT = 0.2
#: More hanging names than the resolver threads of the code before this fix (16).
HANGING = 20


class FakeDns:
    """Answers ``answers`` names, hangs on ``hanging`` names (until ``release``), and
    fails on the rest, recording every lookup."""

    def __init__(self, answers: dict[str, str], hanging: Callable[[str], bool]) -> None:
        self.answers = answers
        self.hanging = hanging
        self.release = threading.Event()
        self.lookups: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        with self._lock:
            self.lookups.append(host)
        if self.hanging(host):
            self.release.wait()
        if host in self.answers:
            return [ipaddress.ip_address(self.answers[host])]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def looked_up(self, host: str) -> int:
        with self._lock:
            return self.lookups.count(host)


@pytest.fixture
def dns() -> Iterator[FakeDns]:
    fake = FakeDns({"healthy.test": "127.0.0.1"}, lambda host: host.startswith("hang"))
    yield fake
    fake.release.set()  # the hanging lookups end, and their threads with them
    wait_until(lambda: resolver_threads() == 0, "the hanging lookups to end")


def resolver_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("rest-hooks-dns"))


#: Half of them names of one domain, half one name of a domain each.
HANGING_NAMES = [f"hang-{i}.attacker.test" for i in range(HANGING // 2)] + [
    f"hang.attacker-{i}.test" for i in range(HANGING // 2)
]


# -- end to end: deliveries, their outcome, the breakers -------------------------------------


@pytest.fixture
def client(dns: FakeDns, monkeypatch: pytest.MonkeyPatch) -> Iterator[OnTheLoop]:
    """The deliver actor's HTTP client, resolving with ``dns``."""
    options = HttpOptions(connect_timeout=CONNECT_TIMEOUT, policy=AddressPolicy(allow_private=True))
    with _delivery_client(options, dns, monkeypatch) as delivery_client:
        yield delivery_client


@contextlib.contextmanager
def _delivery_client(
    options: HttpOptions, dns: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OnTheLoop]:
    delivery_client = OnTheLoop(AsyncDeliveryClient(options, resolver=dns))
    monkeypatch.setattr(attempt, "http_client", lambda: delivery_client.client)
    try:
        yield delivery_client
    finally:
        delivery_client.close()


def add_hooks(owner: Any, *targets: str) -> None:
    Hook.objects.bulk_create(Hook(user=owner, event="book.added", target=t) for t in targets)


def add_book(owner: Any) -> None:
    Book.objects.create(user=owner, title="DNS", pages=1, fiction=True)


def delivery_to(target: str) -> Delivery:
    return Delivery.objects.get(hook__target=target)


def breaker(target: str) -> BreakerState:
    return current_gate().state(origin_of(target))


@pytest.fixture
def attacked(django_user_model, client, dns: FakeDns, run_pipeline) -> None:
    """Deliveries to 20 hooks whose names hang in resolution have been tried; the
    lookups still hang."""
    attacker = django_user_model.objects.create_user(username="attacker", password="x")
    add_hooks(attacker, *(f"http://{name}/" for name in HANGING_NAMES))
    add_book(attacker)
    attempted = run_pipeline()
    assert {d.status for d in attempted} == {Delivery.Status.PENDING}
    assert not dns.release.is_set()


@pytest.fixture
def healthy_targets(user, receiver: Receiver) -> list[str]:
    """Five hooks on a healthy receiver reached by name, one by its literal IP."""
    targets = [f"http://healthy.test:{receiver.port}/h{i}" for i in range(5)]
    targets.append(receiver.url("/literal"))
    add_hooks(user, *targets)
    return targets


@pytest.mark.django_db
def test_names_hanging_in_resolution_leave_a_healthy_target_delivered(
    attacked, user, healthy_targets, receiver: Receiver, dns: FakeDns, run_pipeline
):
    add_book(user)
    run_pipeline()
    for target in healthy_targets:
        delivery = delivery_to(target)
        assert delivery.status == Delivery.Status.SUCCESS, delivery.last_error
        assert delivery.attempts == 1
    assert len(receiver.requests) == len(healthy_targets)
    assert "127.0.0.1" not in dns.lookups  # a literal IP is never looked up


@pytest.mark.django_db
def test_names_hanging_in_resolution_leave_a_healthy_targets_breaker_closed(
    attacked, user, healthy_targets, run_pipeline
):
    """Five attempts to the target by name: five failures would open its breaker."""
    add_book(user)
    run_pipeline()
    assert {breaker(target) for target in healthy_targets} == {BreakerState.CLOSED}


@pytest.mark.django_db
def test_a_target_whose_own_name_hangs_counts_the_timeouts(
    user, client, dns: FakeDns, run_pipeline
):
    """Its own lookup ran and never answered: the target's failure, which opens its
    breaker (5 in a row). Later attempts join that lookup instead of starting another."""
    targets = [f"http://hang.victim.test/h{i}" for i in range(5)]
    add_hooks(user, *targets)
    add_book(user)
    run_pipeline()
    for target in targets:
        delivery = delivery_to(target)
        assert delivery.status == Delivery.Status.PENDING
        assert delivery.last_error == (
            "timeout: ConnectTimeout: resolving 'hang.victim.test' timed out"
        )
    assert breaker(targets[0]) is BreakerState.OPEN
    assert dns.looked_up("hang.victim.test") == 1


@pytest.mark.django_db
def test_a_lookup_that_cannot_start_defers_its_delivery_without_counting_anything(
    user, receiver: Receiver, dns: FakeDns, run_pipeline, monkeypatch
):
    """With every lookup of the process taken by hanging names, a delivery to a name is
    deferred for a moment: no attempt counted, and its target's breaker counts nothing
    (one failure would open it here)."""
    options = HttpOptions(
        connect_timeout=CONNECT_TIMEOUT, policy=AddressPolicy(allow_private=True), max_lookups=2
    )
    with _delivery_client(options, dns, monkeypatch) as delivery_client:
        for name in ("hang.one.test", "hang.two.test"):
            with pytest.raises(DeliveryError):
                delivery_client.post(f"http://{name}/", b"{}", {})
        healthy = f"http://healthy.test:{receiver.port}/hook"
        add_hooks(user, healthy)
        retries_before = attempts_metric("retry", "none")
        add_book(user)
        with override_settings(REST_HOOKS={**settings.REST_HOOKS, "BREAKER_FAILURES": 1}):
            (delivery,) = run_pipeline()
            assert breaker(healthy) is BreakerState.CLOSED
        assert (delivery.status, delivery.attempts) == (Delivery.Status.PENDING, 0)
        assert delivery.next_attempt_at > timezone.now()  # deferred, not due at once
        assert attempts_metric("retry", "none") == retries_before  # no attempt was made
        assert receiver.requests == []
        assert "healthy.test" not in dns.lookups

        dns.release.set()
        wait_until(lambda: resolver_threads() == 0, "the hanging lookups to end")
        assert delivery_client.post(healthy, b"{}", {}).status_code == 200


def test_a_post_to_a_healthy_name_is_not_held_up_by_hanging_names(receiver: Receiver, dns: FakeDns):
    """The client alone: names that hang, looked up from many threads at once (as many
    worker threads would), leave a healthy name and a literal IP answered."""
    options = HttpOptions(connect_timeout=CONNECT_TIMEOUT, policy=AddressPolicy(allow_private=True))
    names = [f"hang-{i}.attacker.test" for i in range(HANGING)]
    names += [f"hang.attacker-{i}.test" for i in range(HANGING)]
    client = OnTheLoop(AsyncDeliveryClient(options, resolver=dns))
    with ThreadPoolExecutor(len(names)) as pool:

        def post_to(name: str) -> str:
            try:
                client.post(f"http://{name}/", b"{}", {})
            except DeliveryError as exc:
                return exc.kind
            return "answered"

        # A thread that comes late finds its domain's hanging lookups all taken: "busy".
        assert set(pool.map(post_to, names)) <= {"timeout", "busy"}
        for url in (f"http://healthy.test:{receiver.port}/a", receiver.url("/b")):
            assert client.post(url, b"{}", {}).status_code == 200
    client.close()


# -- the resolver ------------------------------------------------------------------------------


@pytest.fixture
def make_resolver(dns: FakeDns) -> Callable[..., BoundedResolver]:
    def make(**bounds: int) -> BoundedResolver:
        return BoundedResolver(dns, **bounds)

    return make


def resolve(resolver: BoundedResolver, host: str, timeout: float = 1.0) -> list[IPAddress]:
    """The addresses of ``host``, awaited for at most ``timeout`` as the delivery client
    awaits them (``TimeoutError`` after, the lookup no longer waited for)."""

    async def wait() -> list[IPAddress]:
        return await asyncio.wait_for(asyncio.wrap_future(resolver.start(host, 80)), timeout)

    return asyncio.run(wait())


def hang(resolver: BoundedResolver, host: str) -> None:
    """Look ``host`` up and stop waiting: the lookup goes on, nobody waiting for it."""
    with pytest.raises(TimeoutError):
        resolve(resolver, host, timeout=0.01)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("::1", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_literal_addresses_need_no_lookup(
    make_resolver, dns: FakeDns, host: str, address: str
) -> None:
    resolver = make_resolver(max_lookups=1)
    hang(resolver, "hang.example.test")  # every lookup taken
    assert resolve(resolver, host) == [ipaddress.ip_address(address)]
    assert dns.lookups == ["hang.example.test"]


def test_lookups_of_one_name_share_one_thread(make_resolver, dns: FakeDns) -> None:
    resolver = make_resolver()
    dns.answers["hang.slow.test"] = "192.0.2.1"
    callers = [resolver.start("hang.slow.test", 443) for _ in range(8)]
    dns.release.set()
    assert [c.result(timeout=10) for c in callers] == [[ipaddress.ip_address("192.0.2.1")]] * 8
    assert dns.lookups == ["hang.slow.test"]


def test_hanging_names_of_one_domain_take_a_few_threads(make_resolver, dns: FakeDns) -> None:
    resolver = make_resolver(max_hung_per_domain=2)
    hang(resolver, "hang-1.evil.test")
    hang(resolver, "hang-2.evil.test")
    with pytest.raises(ResolverBusy, match=r"2 lookups of other names of evil\.test"):
        resolve(resolver, "hang-3.evil.test")
    # The hanging name itself may still be waited for: its own lookup, its own failure.
    hang(resolver, "hang-1.evil.test")
    # Other domains are not held up, even under the same public suffix.
    dns.answers.update({"ok.evil.co.uk": "192.0.2.7", "ok.shop.co.uk": "192.0.2.8"})
    hang(resolver, "hang-1.evil.co.uk")
    hang(resolver, "hang-2.evil.co.uk")
    assert resolve(resolver, "ok.shop.co.uk") == [ipaddress.ip_address("192.0.2.8")]
    with pytest.raises(ResolverBusy):
        resolve(resolver, "ok.evil.co.uk")
    wait_until(lambda: resolver_threads() == 4, "only the hanging lookups left")
    dns.release.set()
    wait_until(lambda: resolver_threads() == 0, "the hanging lookups to end")
    assert resolve(resolver, "ok.evil.co.uk") == [ipaddress.ip_address("192.0.2.7")]


def test_names_of_one_domain_that_answer_are_never_limited(make_resolver, dns: FakeDns) -> None:
    """A fan-out to many names of one domain: every lookup has a caller waiting for it,
    none hangs, so the domain's limit does not apply."""
    names = [f"hang-customer-{i}.saas.test" for i in range(20)]
    dns.answers.update(dict.fromkeys(names, "192.0.2.9"))
    resolver = make_resolver(max_hung_per_domain=1)
    with ThreadPoolExecutor(len(names)) as pool:
        answers = [pool.submit(resolve, resolver, name, 10) for name in names]
        wait_until(lambda: len(dns.lookups) == len(names), "every lookup to start")
        dns.release.set()
        assert [a.result() for a in answers] == [[ipaddress.ip_address("192.0.2.9")]] * 20


def test_when_every_lookup_is_taken_a_new_one_fails_at_once(make_resolver) -> None:
    resolver = make_resolver(max_lookups=3)
    for i in range(3):
        hang(resolver, f"hang.domain-{i}.test")
    with pytest.raises(ResolverBusy, match="all 3 lookups of this process are taken"):
        resolve(resolver, "healthy.test")
    assert resolver_threads() == 3


def test_a_lookup_that_gets_no_thread_is_busy_and_leaves_no_trace(
    make_resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system refusing a thread cannot be caused safely for real: ``start`` fails."""

    def refuse(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    resolver = make_resolver()
    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(ResolverBusy, match="can't start new thread"):
        resolve(resolver, "healthy.test")
    monkeypatch.undo()
    assert resolve(resolver, "healthy.test") == [ipaddress.ip_address("127.0.0.1")]


def test_a_failed_lookup_is_the_targets_failure(make_resolver) -> None:
    with pytest.raises(ResolutionFailed, match=r"cannot resolve 'nowhere\.test'"):
        resolve(make_resolver(), "nowhere.test")
    wait_until(lambda: resolver_threads() == 0, "the lookup's thread to end")


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("a.b.evil.example", "evil.example"),
        ("evil.example", "evil.example"),
        ("A.Evil.Co.UK.", "evil.co.uk"),
        ("shop.co.uk", "shop.co.uk"),
        ("localhost", "localhost"),
        ("com", "com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_registered_domain(host: str, domain: str) -> None:
    assert registered_domain(host) == domain
