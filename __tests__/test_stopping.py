"""Stopping loses nothing, however it is asked, and the two halves of the service
(gunicorn, the nginx front) live and die together: the real service through run.sh,
stopped under load the ways people stop it, every answer counted."""

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from support import ROOT, RunningService, big_photo, needs_tool, photos_held, require_tool, told_to_stop, wait_until

from app.serve.front import FrontSettings, listen_address, nginx_binary, render_config
from app.serve.supervisor import ExitStatus
from app.settings import Settings

pytestmark = [
    pytest.mark.e2e,
    needs_tool(nginx_binary() is not None, "nginx is not installed", "nginx"),
]

IN_FLIGHT = 4
# A deadline that a busy shared test machine does not reach: every photo in flight
# must come back 200, not a 503 of its deadline (bench/stopping.py measures the default).
ENV = {"WORKERS": "1", "REQUEST_DEADLINE_S": "300"}
STOP_WITHIN_S = Settings.from_env(ENV).stop_within_s


@pytest.fixture(scope="module")
def photo() -> bytes:
    return big_photo(2400, 1800)  # tiled: seconds of engine time each


def descendants(pid: int) -> list[int]:
    """Every process under pid (the supervisor adopts orphans: they are found too)."""
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def half(service: RunningService, name: str) -> int:
    """The master of gunicorn or nginx: a child of the supervisor."""
    (pid,) = [pid for pid in descendants(service.process.pid) if command_of(pid) == name and is_master(pid, service)]
    return pid


def is_master(pid: int, service: RunningService) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(service.process.pid)


def send(url: str, photo: bytes) -> requests.Response | Exception:
    try:
        return requests.post(
            f"{url}/invocations?return_image=false",
            data=photo,
            headers={"Content-Type": "image/jpeg"},
            timeout=180,
        )
    except requests.ConnectionError as exc:
        return exc


def readme_unit() -> configparser.ConfigParser:
    """The systemd unit exactly as the operations manual gives it."""
    readme = (ROOT / "docs" / "operations.md").read_text()
    (block,) = [b for b in re.findall(r"```ini\n(.*?)```", readme, re.DOTALL) if "[Service]" in b]
    unit = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",), strict=True)
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read_string("\n".join(line.strip() for line in block.splitlines()))
    return unit


def stop_as_systemd(service: RunningService, unit: configparser.ConfigParser) -> None:
    """What `systemctl stop` does to the unit's control group (systemd.kill(5)): the
    KillSignal to every process (KillMode=control-group, the default) or to the main
    process alone (mixed); after TimeoutStopSec, SIGKILL to whatever is left. Here the
    group is the main process and all it started."""
    service_section = unit["Service"]
    kill_signal = signal.Signals[service_section.get("KillSignal", "SIGTERM")]
    mode = service_section.get("KillMode", "control-group")
    timeout = float(service_section.get("TimeoutStopSec", "90").rstrip("s"))
    main = service.process.pid
    targets = [main, *descendants(main)] if mode == "control-group" else [main]
    for pid in targets:
        os.kill(pid, kill_signal)
    try:
        service.process.wait(timeout)
    except subprocess.TimeoutExpired:
        for pid in [main, *descendants(main)]:
            os.kill(pid, signal.SIGKILL)


def stop_under_load(service: RunningService, photo: bytes, stop) -> tuple[list, list, float]:
    """IN_FLIGHT photos sent, the stop once they are in, two more photos during the
    drain: (their answers, the arrivals' answers, the seconds the stop took)."""
    with ThreadPoolExecutor(max_workers=IN_FLIGHT + 2) as pool:
        in_flight = [pool.submit(send, service.url, photo) for _ in range(IN_FLIGHT)]
        wait_until(lambda: photos_held(service.url) >= IN_FLIGHT, timeout=60)  # sent whole, in the worker
        started = time.monotonic()
        stop(service)
        wait_until(lambda: told_to_stop(service.url), timeout=30)
        arrivals = [pool.submit(send, service.url, photo) for _ in range(2)]
        service.process.wait(STOP_WITHIN_S + 10)
        took = time.monotonic() - started
        return [f.result() for f in in_flight], [f.result() for f in arrivals], took


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - where the service listens
        except OSError:
            return False
    return True


def ctrl_c(service):
    os.killpg(service.process.pid, signal.SIGINT)  # the terminal's foreground group


def docker_stop(service):
    os.kill(service.process.pid, signal.SIGTERM)  # PID 1 alone


def group_term(service):
    os.killpg(service.process.pid, signal.SIGTERM)


def gunicorn_master_term(service):
    os.kill(half(service, "gunicorn"), signal.SIGTERM)  # the README's recipe before the supervisor


def systemd_stop(service):
    stop_as_systemd(service, readme_unit())


@pytest.mark.parametrize(
    "stop", [ctrl_c, docker_stop, group_term, gunicorn_master_term, systemd_stop], ids=lambda stop: stop.__name__
)
def test_every_way_of_stopping_answers_the_photos_in_flight_and_refuses_arrivals_with_a_json_503(tmp_path, photo, stop):
    service = RunningService(ENV, tmp_path / "service.log")
    try:
        service.wait_ready()
        processes = [service.process.pid, *descendants(service.process.pid)]
        answers, arrivals, took = stop_under_load(service, photo, stop)
    finally:
        service.stop()
    assert [getattr(a, "status_code", a) for a in answers] == [200] * IN_FLIGHT, service.output()
    for arrival in arrivals:  # refused cleanly: a JSON 503, or nothing listens any more
        if isinstance(arrival, Exception):
            assert "Connection refused" in str(arrival), arrival
        else:
            assert arrival.status_code == 503, arrival.text
            assert arrival.json()["error"]["code"] in ("unavailable", "busy") and arrival.headers["Retry-After"]
    assert service.process.returncode == ExitStatus.STOPPED, service.output()
    assert took < STOP_WITHIN_S
    assert not [pid for pid in processes if Path(f"/proc/{pid}").exists()]  # nothing left behind
    output = service.output()
    assert "[crit]" not in output and "Traceback" not in output, output


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a PID namespace needs root and unshare")
def test_as_pid_1_of_a_container_docker_stop_drains(tmp_path, photo):
    """In a PID namespace of its own, as in a container: the supervisor is PID 1 (which
    the kernel spares any signal it has no handler for) and reaps every orphan."""
    command = ["unshare", "--pid", "--fork", "--mount-proc", str(ROOT / "run.sh")]
    service = RunningService(ENV, tmp_path / "service.log", command=command)
    try:
        service.wait_ready()
        pid_1 = descendants(service.process.pid)[0]  # unshare's one child, then its own
        (ids,) = [line for line in Path(f"/proc/{pid_1}/status").read_text().splitlines() if line.startswith("NSpid:")]
        assert ids.split()[-1] == "1"  # its pid in its own namespace
        answers, arrivals, _ = stop_under_load(service, photo, lambda service: os.kill(pid_1, signal.SIGTERM))
    finally:
        service.stop()
    assert [getattr(a, "status_code", a) for a in answers] == [200] * IN_FLIGHT, service.output()
    assert [getattr(a, "status_code", a) for a in arrivals] == [503, 503]
    assert service.process.returncode == ExitStatus.STOPPED


def test_a_second_ctrl_c_stops_at_once(tmp_path, photo):
    service = RunningService(ENV, tmp_path / "service.log")
    try:
        service.wait_ready()
        processes = descendants(service.process.pid)
        with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
            in_flight = [pool.submit(send, service.url, photo) for _ in range(IN_FLIGHT)]
            wait_until(lambda: photos_held(service.url) >= 1, timeout=60)
            os.killpg(service.process.pid, signal.SIGINT)
            wait_until(lambda: told_to_stop(service.url), timeout=30)  # the first Ctrl-C has landed
            started = time.monotonic()
            os.killpg(service.process.pid, signal.SIGINT)
            assert service.process.wait(30) == 128 + signal.SIGINT
            assert time.monotonic() - started < 10
            [future.result() for future in in_flight]
    finally:
        service.stop()
    assert not [pid for pid in processes if Path(f"/proc/{pid}").exists()]
    assert "SIGINT: stopping at once" in service.output()


@pytest.mark.parametrize(
    ("victim", "status", "line"),
    [
        ("gunicorn", 128 + signal.SIGKILL, "gunicorn (pid {pid}) was killed by SIGKILL; stopping the service"),
        ("nginx", ExitStatus.FRONT_ENDED, "nginx (pid {pid}) was killed by SIGKILL; stopping the service"),
    ],
)
def test_a_half_that_is_killed_takes_the_service_down_and_a_restart_starts(tmp_path, victim, status, line):
    """gunicorn's master or nginx's killed outright (the OOM killer): the other half does
    not keep the port answering 503 forever; the service exits with a status that says
    which, leaves no process behind, and starts again on the same port."""
    env = {"WORKERS": "1", "TMPDIR": str(tmp_path)}
    service = RunningService(env, tmp_path / "service.log")
    try:
        service.wait_ready()
        wait_until(lambda: "listens on" in service.output(), timeout=30)  # past nginx's start check
        processes = descendants(service.process.pid)
        pid = half(service, victim)
        os.kill(pid, signal.SIGKILL)
        assert service.process.wait(60) == status, service.output()
    finally:
        service.stop()
    assert line.format(pid=pid) in service.output()
    assert not [pid for pid in processes if Path(f"/proc/{pid}").exists()]
    assert port_is_free(service.port)
    assert not list(tmp_path.glob("detector-*"))
    again = RunningService(env, tmp_path / "again.log", port=service.port)
    try:
        again.wait_ready()
    finally:
        assert again.stop() == ExitStatus.STOPPED


def test_a_run_killed_outright_leaves_nothing_that_stops_the_next_start(tmp_path):
    """The supervisor itself killed (SIGKILL): its children stop on their own, the port
    is freed, and the next start removes the dead run's directory."""
    env = {"WORKERS": "1", "TMPDIR": str(tmp_path)}
    service = RunningService(env, tmp_path / "service.log")
    try:
        service.wait_ready()
        processes = descendants(service.process.pid)
        os.kill(service.process.pid, signal.SIGKILL)
        service.process.wait(10)
        wait_until(lambda: not [pid for pid in processes if Path(f"/proc/{pid}").exists()], timeout=30)
        assert port_is_free(service.port)
        assert list(tmp_path.glob("detector-run-*"))  # nobody was left to remove it
        again = RunningService(env, tmp_path / "again.log", port=service.port)
        try:
            again.wait_ready()
            assert [p.name for p in tmp_path.glob("detector-run-*")] == [
                p.name for p in tmp_path.glob(f"detector-run-{again.process.pid}-*")
            ]
        finally:
            again.stop()
    finally:
        service.stop()


def test_the_readme_unit_drains_on_stop_and_systemd_accepts_it(tmp_path):
    """The unit as written: a stop that drains (KillMode=mixed, the signal to the
    supervisor alone), TimeoutStopSec above the longest stop, network-online both
    wanted and waited for; systemd-analyze verify has nothing to say about it."""
    unit = readme_unit()
    assert unit["Unit"]["Wants"] == unit["Unit"]["After"] == "network-online.target"
    assert unit["Service"]["KillMode"] == "mixed"
    assert float(unit["Service"]["TimeoutStopSec"]) > Settings.from_env({}).stop_within_s
    assert unit["Service"]["ExecStart"] == f"{unit['Service']['WorkingDirectory']}/run.sh"
    verify = "/usr/bin/systemd-analyze"
    require_tool(os.access(verify, os.X_OK), "systemd-analyze is not installed", "systemd")
    # This checkout stands for /srv/detector, the one change made to the unit.
    readme = (ROOT / "docs" / "operations.md").read_text()
    (block,) = [b for b in re.findall(r"```ini\n(.*?)```", readme, re.DOTALL) if "[Service]" in b]
    path = tmp_path / "detector.service"
    path.write_text("\n".join(line.strip() for line in block.replace("/srv/detector", str(ROOT)).splitlines()))
    result = subprocess.run([verify, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False)
    complaints = [line for line in result.stderr.splitlines() if "detector.service" in line]
    assert result.returncode == 0 and not complaints, result.stderr


def test_the_front_listens_on_host_only(tmp_path):
    front = FrontSettings(
        port=8080, host="127.0.0.1", directory=tmp_path, max_body_mb=50, upstream_timeout_s=90, cors_any_origin=True
    )
    assert "listen 127.0.0.1:8080 backlog=4096;" in render_config(front)
    assert listen_address("::1", 8080) == "[::1]:8080"
