"""The queue in front of the engine, on its own and inside the app: first come first
served, a bounded depth, refusals by deadline, and nothing but photos takes a place."""

import threading
import time

import pytest
from support import photo_bytes, wait_until

from app.http.admission import PhotoQueue, QueueRefusal


def test_photos_wait_in_arrival_order_and_a_full_queue_refuses():
    queue = PhotoQueue(active=1, depth=2)
    first = queue.enter(time.monotonic() + 5)
    order = []

    def later(name):
        started = queue.enter(time.monotonic() + 5)
        order.append(name)
        queue.leave(started)

    waiters = []
    for count, name in enumerate(("second", "third"), start=1):
        waiters.append(threading.Thread(target=later, args=(name,)))
        waiters[-1].start()
        wait_until(lambda count=count: queue._turns.waiting == count)  # queued in this order
    with pytest.raises(QueueRefusal, match="2 photos already wait"):
        queue.enter(time.monotonic() + 5)
    queue.leave(first)
    for thread in waiters:
        thread.join(5)
    assert order == ["second", "third"] and queue._working == 0


def test_a_photo_whose_turn_would_come_after_its_deadline_is_refused_at_once():
    queue = PhotoQueue(active=1, depth=10)
    queue.leave(queue.enter(time.monotonic() + 5))  # teaches it nothing: a photo of ~0 s
    queue._seconds_per_photo = 2.0  # as if photos took 2 s each
    running = queue.enter(time.monotonic() + 5)
    started = time.monotonic()
    with pytest.raises(QueueRefusal, match="longer than its deadline"):
        queue.enter(time.monotonic() + 1.0)  # its turn: in about 2 s
    assert time.monotonic() - started < 0.5  # refused now, not after waiting
    queue.leave(running)


def test_only_photos_take_a_place(fake_app, fake_client):
    queue = fake_app.extensions["photo_queue"]
    for _ in range(3):
        assert fake_client.get("/ping").status_code == 200
    fake_client.options(
        "/invocations", headers={"Origin": "https://lab.example", "Access-Control-Request-Method": "POST"}
    )
    fake_client.post("/invocations", data=b"not a photo", content_type="image/jpeg")  # a 400 leaves its place
    assert fake_client.post("/invocations", data=photo_bytes("dog.jpg"), content_type="image/jpeg").status_code == 200
    assert queue._working == 0 and not queue._turns.waiting


def queued_in_order(queue: PhotoQueue, clients: list[str], order: list[str]) -> list[threading.Thread]:
    """One waiting photo per entry of `clients`, queued in that order; each records its
    client in `order` when it starts."""

    def later(client):
        started = queue.enter(time.monotonic() + 10, client)
        order.append(client)
        queue.leave(started, client)

    waiters = []
    already = queue._turns.waiting
    for count, client in enumerate(clients, start=already + 1):
        waiters.append(threading.Thread(target=later, args=(client,)))
        waiters[-1].start()
        wait_until(lambda count=count: queue._turns.waiting == count)
    return waiters


def test_a_client_with_no_photo_at_work_gets_a_place_beside_other_clients_costly_photos():
    """Two places, both held by one client's costly photos, more of them waiting: a
    photo of a client with none at work starts at once in one of the `active` extra
    places; once those are taken too, it goes before the waiting costly ones."""
    queue = PhotoQueue(active=2, depth=10)
    held = [queue.enter(time.monotonic() + 5, "hostile") for _ in range(2)]
    order: list[str] = []
    waiters = queued_in_order(queue, ["hostile", "hostile"], order)
    extra = [queue.enter(time.monotonic() + 1, client) for client in ("normal", "other")]  # at once
    assert queue._working == 4 and order == []
    waiters += queued_in_order(queue, ["third"], order)  # every extra place taken: it waits
    queue.leave(held[0], "hostile")
    wait_until(lambda: order[:1] == ["third"])
    for started, client in zip([held[1], *extra], ["hostile", "normal", "other"], strict=True):
        queue.leave(started, client)
    for thread in waiters:
        thread.join(5)
    assert order == ["third", "hostile", "hostile"] and queue._working == 0


def test_the_engine_time_a_client_used_lately_counts_not_only_its_place():
    """A client whose photos took long (many tiles) goes after one whose photos were quick,
    though it queued first; among equals, first come first served."""
    queue = PhotoQueue(active=1, depth=10)
    for client, seconds in (("costly", 30.0), ("cheap", 0.1)):  # as if its last photo held the engine so long
        queue._turns.started(client)
        queue._turns.finished(client, seconds)
    running = queue.enter(time.monotonic() + 5, "first")
    extra = queue.enter(time.monotonic() + 5, "second")  # the one extra place (active=1)
    order: list[str] = []
    waiters = queued_in_order(queue, ["costly", "cheap", "new"], order)
    queue.leave(running, "first")
    for thread in waiters:
        thread.join(5)
    queue.leave(extra, "second")
    assert order == ["new", "cheap", "costly"]
    assert queue._turns.used("costly", time.monotonic()) > 29  # halves in a minute, not at once


def test_a_lone_client_is_served_first_come_first_served():
    queue = PhotoQueue(active=1, depth=10)
    running = queue.enter(time.monotonic() + 5, "lab")
    order: list[str] = []
    waiters = queued_in_order(queue, ["lab"] * 3, order)
    queue.leave(running, "lab")
    for thread in waiters:
        thread.join(5)
    assert order == ["lab"] * 3 and not queue._turns._working
