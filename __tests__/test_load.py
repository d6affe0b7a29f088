"""Several staff at once, a crashed worker, a long day: real gunicorn on loopback,
driven by a bounded load generator inside the test."""

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from support import (
    RunningService,
    needs_tool,
    photo_bytes,
    photos_held,
    rss_mb,
    told_to_stop,
    wait_until,
    worker_pids,
)

from app.serve.front import nginx_binary
from bench.load import client_session

pytestmark = pytest.mark.e2e  # every test here starts the service

PHOTOS = ("dog.jpg", "person.jpg", "eagle.jpg")
# ./test.sh installs nginx as root; a developer without it sees why these do not run.
NEEDS_NGINX = needs_tool(nginx_binary() is not None, "nginx is not installed", "nginx")


@pytest.fixture(scope="module")
def reference_stats(live_server):
    """Each photo's counts, asked one at a time."""
    return {name: post(live_server.url, name).json()["stat"] for name in PHOTOS}


def post(url: str, name: str, session: requests.Session | None = None) -> requests.Response:
    return (session or requests).post(
        f"{url}/invocations?return_image=false&filename={name}",
        data=photo_bytes(name),
        headers={"Content-Type": "image/jpeg"},
        timeout=60,
    )


@contextmanager
def pinging(url: str, every: float) -> Iterator[list[float]]:
    """/ping every `every` seconds while the block runs; yields the seconds each took."""
    pings: list[float] = []
    running = threading.Event()
    running.set()

    def pinger():
        while running.is_set():
            started = time.monotonic()
            assert requests.get(f"{url}/ping", timeout=5).status_code == 200
            pings.append(time.monotonic() - started)
            time.sleep(every)

    watcher = threading.Thread(target=pinger)
    watcher.start()
    try:
        yield pings
    finally:
        running.clear()
        watcher.join()


def test_eight_clients_get_their_own_counts_and_ping_answers(live_server, reference_stats):
    def client(index: int) -> list[tuple[str, int, dict]]:
        results = []
        with requests.Session() as session:
            for round_ in range(50):
                name = PHOTOS[(index + round_) % len(PHOTOS)]
                response = post(live_server.url, name, session)
                results.append((name, response.status_code, response.json()["stat"]))
        return results

    with pinging(live_server.url, every=0.2) as pings, ThreadPoolExecutor(max_workers=8) as pool:
        results = [result for batch in pool.map(client, range(8)) for result in batch]
    assert len(results) == 400
    for name, status, stat in results:
        assert status == 200
        assert stat == reference_stats[name], name  # no counts of another request, ever
    assert len(pings) >= 5 and max(pings) < 1.0


def test_a_killed_worker_is_replaced_and_nothing_is_mixed_up(tmp_path, reference_stats):
    service = RunningService({"WORKERS": "2"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        before = worker_pids(service.process.pid)
        assert len(before) == 2
        outcomes: list[tuple[str, object]] = []

        def client(index: int):
            for round_ in range(15):
                name = PHOTOS[(index + round_) % len(PHOTOS)]
                try:
                    response = post(service.url, name)
                    outcomes.append(
                        (name, response.json()["stat"] if response.status_code == 200 else response.status_code)
                    )
                except requests.RequestException as exc:  # the killed worker's connections
                    outcomes.append((name, exc))

        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(client, i) for i in range(4)]
            wait_until(lambda: len(outcomes) >= 4, timeout=60)  # the clients are being served
            os.kill(min(before), signal.SIGKILL)
            for future in futures:
                future.result()

        def replaced() -> bool:
            after = worker_pids(service.process.pid)
            return len(after) == 2 and min(before) not in after

        wait_until(replaced, timeout=30)
        for name, outcome in outcomes:
            # A request may fail with the worker it was on; it never gets another photo's counts.
            if isinstance(outcome, dict):
                assert outcome == reference_stats[name]
            else:
                assert isinstance(outcome, requests.RequestException | int), outcome
        assert sum(isinstance(outcome, dict) for _, outcome in outcomes) >= 40
        for name in PHOTOS:  # afterwards every request succeeds
            assert post(service.url, name).json()["stat"] == reference_stats[name]
    finally:
        service.stop()


def test_a_thousand_requests_do_not_grow_memory(tmp_path):
    service = RunningService({"WORKERS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        (worker,) = worker_pids(service.process.pid)
        body = photo_bytes("person.jpg")

        def send(count: int):
            with requests.Session() as session:
                for _ in range(count):
                    response = session.post(
                        f"{service.url}/invocations", data=body, headers={"Content-Type": "image/jpeg"}, timeout=60
                    )
                    assert response.status_code == 200

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(send, [50, 50]))  # warm-up: allocator pools and caches fill
            warm = rss_mb(worker)
            list(pool.map(send, [500, 500]))
        grown = rss_mb(worker)
        assert grown <= warm * 1.10, f"RSS {warm:.0f} MB after warm-up, {grown:.0f} MB after 1000 requests"
    finally:
        service.stop()


def test_thirty_two_clients_are_queued_not_refused_and_ping_stays_fast(tmp_path):
    """The default deployment (one worker) under 32 clients x 3 photos each: every
    answer a 200 with its own photo's counts; /ping under a second throughout."""
    service = RunningService({"WORKERS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        expected = {name: post(service.url, name).json()["stat"] for name in PHOTOS}
        sent = [PHOTOS[(client + round_) % 3] for client in range(32) for round_ in range(3)]
        with pinging(service.url, every=0.1) as pings, ThreadPoolExecutor(max_workers=32) as pool:
            responses = list(pool.map(lambda name: (name, post(service.url, name)), sent))
    finally:
        service.stop()
    assert [response.status_code for _, response in responses] == [200] * len(sent)
    for name, response in responses:
        assert response.json()["stat"] == expected[name], name
    assert pings and max(pings) < 1.0, f"slowest /ping {max(pings):.2f} s"


@NEEDS_NGINX
def test_slow_and_idle_clients_take_nothing_from_ping_or_photos(tmp_path):
    """50 connections trickling a request at a byte a second and 30 idle ones, beside a
    normal client: nginx holds them, gunicorn's threads never see them."""
    from bench.slow_clients import idle, port_of, run_case, trickle_everything

    service = RunningService({"WORKERS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        stop = threading.Event()
        idlers = [threading.Thread(target=idle, args=(service.port, stop), daemon=True) for _ in range(30)]
        for thread in idlers:
            thread.start()
        try:
            outcome = run_case(service.url, port_of(service.url), trickle_everything, 50, seconds=6)
        finally:
            stop.set()
    finally:
        service.stop()
    assert outcome.pings_failed == 0 and outcome.slowest_ping < 1.0, outcome
    assert outcome.photos_answered >= 5 and outcome.photos_failed == 0, outcome


def test_a_full_queue_refuses_with_503_and_retry_after_never_a_reset(tmp_path):
    """One photo at work and a queue of 4 under 32 clients: the refused get a clean 503
    busy with Retry-After (no timeout, no reset connection), the rest their counts."""
    service = RunningService({"WORKERS": "1", "QUEUE_DEPTH": "4", "ACTIVE_PHOTOS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        workers = worker_pids(service.process.pid)
        with ThreadPoolExecutor(max_workers=32) as pool:
            responses = list(pool.map(lambda _: post(service.url, "kite.jpg"), range(32)))
        statuses = [response.status_code for response in responses]
        assert set(statuses) == {200, 503}, statuses  # some queued and served, some refused
        for response in responses:
            if response.status_code == 503:
                assert response.json()["error"]["code"] == "busy" and int(response.headers["Retry-After"]) >= 1
        assert worker_pids(service.process.pid) == workers
    finally:
        service.stop()


def test_refusals_do_not_count_toward_max_requests(tmp_path):
    """MAX_REQUESTS=70 (a restart after 70-77 requests served) and 80 photos at once on
    one place and no queue: most are refused, and the worker is not recycled for them."""
    service = RunningService(
        {"WORKERS": "1", "QUEUE_DEPTH": "0", "ACTIVE_PHOTOS": "1", "MAX_REQUESTS": "70"}, tmp_path / "service.log"
    )
    try:
        service.wait_ready()
        workers = worker_pids(service.process.pid)
        # From 4 addresses: the front takes at most 32 uploads of one (test_front_addresses).
        sessions = [client_session(service.url, number) for number in range(4)]
        with ThreadPoolExecutor(max_workers=80) as pool:
            answers = pool.map(lambda number: post(service.url, "kite.jpg", sessions[number % 4]), range(80))
            statuses = [answer.status_code for answer in answers]
        served = statuses.count(200)
        assert served + statuses.count(503) == 80
        if served < 70:  # on a machine fast enough to serve 70 of them, a restart is right
            # gunicorn logs its decision to recycle in the request that reaches the limit,
            # before that request's answer: all 80 answered, the line would be there.
            assert "Autorestarting worker" not in service.output(), f"{served} served, yet the worker was recycled"
            assert worker_pids(service.process.pid) == workers
    finally:
        service.stop()


@NEEDS_NGINX
def test_photos_arriving_while_the_service_stops_get_a_json_503(tmp_path):
    """SIGTERM: photos in flight finish; photos that arrive meanwhile are refused with
    the service's JSON 503 and Retry-After, not accepted and then reset."""
    service = RunningService({"WORKERS": "1"}, tmp_path / "service.log")
    try:
        service.wait_ready()
        body = photo_bytes("kite.jpg")

        def send(_):
            try:
                return requests.post(
                    f"{service.url}/invocations?return_image=false",
                    data=body,
                    headers={"Content-Type": "image/jpeg"},
                    timeout=60,
                )
            except requests.ConnectionError as exc:  # nginx stopped listening: the service is gone
                return exc

        with ThreadPoolExecutor(max_workers=8) as pool:
            first = [pool.submit(send, i) for i in range(4)]
            wait_until(lambda: photos_held(service.url) >= 1, timeout=30)
            os.kill(service.process.pid, signal.SIGTERM)  # to PID 1 alone, as a container runtime stops it
            wait_until(lambda: told_to_stop(service.url), timeout=30)
            later = [pool.submit(send, i) for i in range(4)]
            answers = [future.result() for future in first + later]
    finally:
        service.stop()
    for answer in answers:
        if isinstance(answer, Exception):
            assert "Connection refused" in str(answer), answer  # after nginx closed: no reset mid-request
        else:
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 503:
                assert answer.json()["error"]["code"] in ("busy", "unavailable") and answer.headers["Retry-After"]
    assert any(not isinstance(answer, Exception) and answer.status_code == 200 for answer in answers[:4])
    refused = [a for a in answers[4:] if isinstance(a, Exception) or a.status_code == 503]
    assert refused, [getattr(a, "status_code", a) for a in answers[4:]]  # the stop was seen, cleanly


@NEEDS_NGINX
def test_a_port_in_use_stops_the_start_with_one_line_and_a_failure(tmp_path):
    """nginx cannot listen: the service does not run half-started, and its exit status
    says it failed, so a restart policy sees it."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {"WORKERS": "1", "PORT": str(port), "TMPDIR": str(tmp_path)}
        service = RunningService(env, tmp_path / "service.log")
        try:
            assert service.process.wait(60) == 1
        finally:
            service.stop()
    assert [line for line in service.output().splitlines() if line.startswith("cannot start:")] == [
        f"cannot start: port {port} is not free (Address already in use)"
    ]
    assert not list(tmp_path.glob("detector-*"))  # the front's and the metrics' directories went with it
