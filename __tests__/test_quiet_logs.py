"""What an operator reads: every line in the service's format (JSON when asked), through a
start, a visit of the page and a stop under load; the queue visible in /metrics."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from support import ROOT, RunningService, big_photo, needs_tool, photos_held, wait_until

from app.http.admission import PhotoQueue
from app.serve.front import nginx_binary


@pytest.mark.e2e  # a fresh interpreter
def test_onnxruntime_says_nothing_of_its_own_when_home_is_not_writable():
    """onnxruntime 1.2x+ prints a coloured telemetry warning at import when it cannot
    write its device id under $HOME: telemetry is off, so nothing is written or said."""
    result = subprocess.run(
        [sys.executable, "-c", "import app.inference.engines.onnxruntime_engine"],
        cwd=ROOT,
        env={**os.environ, "HOME": "/etc/passwd"},  # a file: no folder can be made in it
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stderr == ""


def test_the_queue_tells_every_change_of_waiting_and_working_photos():
    seen = []
    queue = PhotoQueue(active=1, depth=4, observe=lambda queued, working: seen.append((queued, working)))
    first = queue.enter(time.monotonic() + 10)
    second_started = []
    waiter = threading.Thread(target=lambda: second_started.append(queue.enter(time.monotonic() + 10)))
    waiter.start()
    wait_until(lambda: (1, 1) in seen)
    queue.leave(first)
    waiter.join(10)
    queue.leave(second_started[0])
    assert seen == [(0, 1), (1, 1), (1, 0), (0, 0), (0, 1), (0, 0)]


@pytest.mark.e2e
def test_metrics_show_each_workers_queue(live_server):
    text = requests.get(f"{live_server.url}/metrics", timeout=10).text
    for name in ("detector_photos_queued", "detector_photos_at_work"):
        lines = [line for line in text.splitlines() if line.startswith(name + "{")]
        assert len(lines) == 2 and all('pid="' in line for line in lines), text  # the live server's 2 workers


@pytest.mark.e2e
@needs_tool(nginx_binary() is not None, "nginx is not installed", "nginx")
def test_every_line_is_json_through_a_page_visit_and_a_stop_and_the_page_files_stay_quiet(tmp_path):
    env = {"WORKERS": "1", "LOG_FORMAT": "json", "HOME": "/etc/passwd", "REQUEST_DEADLINE_S": "300"}
    service = RunningService(env, tmp_path / "service.log")
    photo = big_photo()  # seconds of work: the stop is still draining when the next one comes
    try:
        service.wait_ready()
        for path in ("/", "/static/page.css", "/favicon.ico"):
            assert requests.get(service.url + path, timeout=10).status_code == 200
        answers = []

        def send():
            return requests.post(
                f"{service.url}/invocations", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=300
            )

        sender = threading.Thread(target=lambda: answers.append(send()))
        sender.start()
        wait_until(lambda: photos_held(service.url) >= 1, timeout=60)
        os.killpg(service.process.pid, signal.SIGINT)
        # Seen in the log, not asked of /ping: every request the test makes is a line it counts.
        wait_until(lambda: "Handling signal: term" in service.output(), timeout=30)
        refused = send()
        sender.join(300)
        assert service.process.wait(120) == 0
    finally:
        service.stop()
    assert answers[0].status_code == 200 and refused.status_code == 503
    records = [json.loads(line) for line in service.output().splitlines()]  # every line, or this raises
    assert all({"time", "level", "logger", "pid"} <= set(record) for record in records)
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL") or "[crit]" in r.get("message", "")]
    answered = [(r["path"], r["status"], r.get("front", False)) for r in records if r["logger"] == "app.request"]
    # The page's css and icon at DEBUG only; the photo refused while stopping is the front's line.
    assert sorted(answered) == [("/", 200, False), ("/invocations", 200, False), ("/invocations", 503, True)]
    assert any(r["logger"] == "nginx" and "503 unavailable while gunicorn stops" in r["message"] for r in records)
