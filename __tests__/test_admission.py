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
