"""Stopping under load: the service started by ./run.sh (default settings, 1 worker),
four camera-sized photos (3400x2600 JPEG, tiled, seconds each) in flight, then a stop,
each of the ways people stop it; counts what every client got back.

    python -m bench.stopping [--root CHECKOUT] [--photos 4] [--ways ctrl-c,...] [--deadline S]

--root runs another checkout's run.sh (an older commit, to compare on one machine).
__tests__/test_stopping.py runs the same stops with assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image

from app.inference.int8.cpu_class import cpu_class
from bench.server import free_port

ROOT = Path(__file__).resolve().parents[1]
UNIT_TIMEOUT_STOP_S = 100  # the docs' systemd unit's TimeoutStopSec (docs/operations.md)
DOCKER_STOP_S = 90  # `docker stop --time`, as docs/operations.md says to give it


def camera_photo(width: int = 3400, height: int = 2600) -> bytes:
    with Image.open(ROOT / "data" / "dog.jpg") as image:
        out = io.BytesIO()
        image.convert("RGB").resize((width, height)).save(out, "JPEG", quality=90)
    return out.getvalue()


def descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found = []
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def gunicorn_master(main: int) -> int:
    """The main process itself (gunicorn exec'd by run.sh) or its child of that name."""
    if _comm(main) == "gunicorn":
        return main
    return next(pid for pid in descendants(main) if _comm(pid) == "gunicorn")


def _kill_all(main: int, signum: int) -> None:
    for pid in [main, *descendants(main)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _then_kill(process: subprocess.Popen, after: float) -> None:
    """What systemd and docker do once their stop timeout has passed."""
    try:
        process.wait(after)
    except subprocess.TimeoutExpired:
        _kill_all(process.pid, signal.SIGKILL)


# Each way: what the stop does to the service's main process (run.sh, exec'd into the
# supervisor or, before it, into gunicorn). The control group is the main process and
# everything under it.
WAYS = {
    "ctrl-c": lambda p: os.killpg(p.pid, signal.SIGINT),  # the terminal's foreground group
    "systemd-mixed": lambda p: (os.kill(p.pid, signal.SIGTERM), _then_kill(p, UNIT_TIMEOUT_STOP_S)),
    "systemd-control-group": lambda p: (_kill_all(p.pid, signal.SIGTERM), _then_kill(p, UNIT_TIMEOUT_STOP_S)),
    "docker-stop": lambda p: (os.kill(p.pid, signal.SIGTERM), _then_kill(p, DOCKER_STOP_S)),
    "kill-term-gunicorn-master": lambda p: os.kill(gunicorn_master(p.pid), signal.SIGTERM),
}


def send(url: str, photo: bytes) -> str:
    try:
        answer = requests.post(
            f"{url}/invocations?return_image=false", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=300
        )
    except requests.ConnectionError as exc:
        return "refused" if "Connection refused" in str(exc) else "reset"
    if answer.status_code == 200:
        return "200"
    try:
        return f"{answer.status_code} {answer.json()['error']['code']}"
    except ValueError:
        return f"{answer.status_code} not JSON"


def measure(root: Path, way: str, photo: bytes, photos: int, settings: dict[str, str]) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PORT": str(port), "WORKERS": "1", **settings}
    with tempfile.NamedTemporaryFile("w", prefix="bench-stopping-", suffix=".log") as log:
        process = subprocess.Popen(
            [str(root / "run.sh")], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.2)
            tree = [process.pid, *descendants(process.pid)]
            with ThreadPoolExecutor(max_workers=photos + 2) as pool:
                in_flight = [pool.submit(send, url, photo) for _ in range(photos)]
                time.sleep(1.5)  # sent whole, queued in the worker
                started = time.monotonic()
                stopping = pool.submit(WAYS[way], process)
                time.sleep(1)
                arrivals = [pool.submit(send, url, photo) for _ in range(2)]
                code = process.wait(300)
                took = time.monotonic() - started
                stopping.result()
                answers = Counter(f.result() for f in in_flight)
                refused = Counter(f.result() for f in arrivals)
        finally:
            if process.poll() is None:
                _kill_all(process.pid, signal.SIGKILL)
                process.wait()
        left = [pid for pid in tree if Path(f"/proc/{pid}").exists()]
        crit = sum("[crit]" in line for line in Path(log.name).read_text(errors="replace").splitlines())
    return {"way": way, "answers": answers, "arrivals": refused, "exit": code, "s": took, "left": left, "crit": crit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--ways", default=",".join(WAYS))
    # On a busy machine 4 big photos can outlast the default 60 s: a 503 of the deadline,
    # not of the stop. A longer one shows the stop alone.
    parser.add_argument("--deadline", type=float, help="REQUEST_DEADLINE_S (default: the service's)")
    args = parser.parse_args()
    settings = {"REQUEST_DEADLINE_S": f"{args.deadline:g}"} if args.deadline else {}
    photo = camera_photo()
    print(
        f"## Stopping with {args.photos} photos of 3400x2600 in flight "
        f"({args.root}, {settings or 'default settings'}, CPU class {cpu_class()})\n"
    )
    print("| how it was stopped | photos in flight answered | arrivals during the stop | exit | stop took | left |")
    print("| --- | --- | --- | --- | --- | --- |")
    for way in args.ways.split(","):
        row = measure(args.root.resolve(), way, photo, args.photos, settings)
        answered = row["answers"]["200"]
        others = ", ".join(f"{n} {what}" for what, n in row["answers"].items() if what != "200")
        arrivals = ", ".join(f"{n} {what}" for what, n in row["arrivals"].items())
        print(
            f"| {way} | {answered} of {args.photos}{f' ({others})' if others else ''} | {arrivals} | "
            f"{row['exit']} | {row['s']:.1f} s | {len(row['left'])} processes, {row['crit']} [crit] lines |",
            flush=True,
        )


if __name__ == "__main__":
    main()
