"""``celery -A app kit flower``: a real Flower on a private Redis, watching a real worker.

Every Flower here is started by the kit's command as a subprocess (exec'd into
``celery flower``) on a free port, and stopped with its process group at teardown.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from celery_kit import Settings, make_app
from celery_kit.testing import wait_until as wait_for
from celery_kit.testing.processes import stop_process

APPS = str(Path(__file__).parent / "apps")
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
pytestmark = pytest.mark.timeout(180)

USER, PASSWORD = "ops", "flower-test-pw-1"


def flower_env(broker: str, **extra: str) -> dict[str, str]:
    """os.environ without kit/Flower/Celery settings, plus the test's own."""
    drop = ("CELERY_KIT_", "FLOWER_", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(CELERY_BROKER_URL=broker, PYTHONPATH=APPS, PYTHONUNBUFFERED="1", **extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class Flower:
    """A ``celery -A kit_basic kit flower`` subprocess (the kit execs Flower in place)."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, prefix: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}" + (f"/{prefix}" if prefix else "")
        self.log_path = workdir / f"flower-{self.port}.log"
        argv = [sys.executable, "-m", "celery", "-A", "kit_basic", "kit", "flower"]
        argv += ["--port", str(self.port), *args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait_ready(self) -> None:
        """Poll /healthcheck (unauthenticated upstream) until Flower answers."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"Flower exited {self.proc.returncode}:\n{self.log()}")
            try:
                return http_get(f"{self.base}/healthcheck")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout_s=60, what=f"Flower on port {self.port}:\n{self.log()}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        return http_get(f"{self.base}{path}", headers)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (Flower saves its state and exits), SIGKILL the group after 15 s."""
        stop_process(self.proc, signal.SIGTERM, group=True, timeout_s=15.0)


@pytest.fixture
def start_flower(tmp_path: Path) -> Iterator[Callable[..., Flower]]:
    started: list[Flower] = []

    def start(*args: str, env: dict[str, str], prefix: str = "") -> Flower:
        flower = Flower(list(args), env, tmp_path, prefix)
        started.append(flower)
        flower.wait_ready()
        return flower

    yield start
    for flower in started:
        flower.stop()


def worker_listed(flower: Flower, hostname: str, headers: dict[str, str]) -> bool:
    status, body = flower.get("/workers", headers)
    assert status == 200, body
    return hostname in body


def test_flower_requires_auth_lists_the_worker_and_sees_task_events(
    kit_redis_url: str, kit_worker, start_flower, tmp_path: Path
) -> None:
    # Given a worker started WITHOUT task events, and a secret file with one login
    worker = kit_worker("kit_basic", env=flower_env(kit_redis_url), pythonpath=[APPS])
    secret = tmp_path / "flower-users"
    secret.write_text(f"# Flower logins\n{USER}:{PASSWORD}\n")
    secret.chmod(0o600)
    env = flower_env(
        kit_redis_url,
        CELERY_KIT_FLOWER__URL_PREFIX="flower",
        CELERY_KIT_FLOWER__DB=str(tmp_path / "state"),
    )
    # When `kit flower` starts Flower with that file, under the /flower prefix
    flower = start_flower("--basic-auth-file", str(secret), env=env, prefix="flower")
    auth = basic(USER, PASSWORD)

    # Then the UI and the API refuse requests without (or with wrong) credentials
    for path in ("/", "/workers", "/tasks", "/broker", "/api/workers", "/api/tasks"):
        assert flower.get(path)[0] == 401, path
        assert flower.get(path, basic(USER, "wrong"))[0] == 401, path
    # and the password is in Flower's environment, not in its argv (ps shows argv)
    cmdline = Path(f"/proc/{flower.proc.pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b" flower --address=127.0.0.1" in cmdline
    assert PASSWORD.encode() not in cmdline
    # and with the credentials the workers page lists the running worker
    wait_for(lambda: worker_listed(flower, worker.hostname, auth), timeout_s=60, what="worker")
    status, body = flower.get("/api/workers?refresh=1", auth)
    assert status == 200
    assert worker.hostname in json.loads(body)
    # and /healthcheck and /metrics stay unauthenticated (upstream design, docs/flower.md)
    assert flower.get("/healthcheck") == (200, "OK")
    status, metrics = flower.get("/metrics")
    assert status == 200
    assert "flower_worker_online" in metrics

    # When Flower has switched task events on in the worker (its enable_events broadcast)
    worker.wait_for_log("Events of group {task} enabled by remote.", timeout_s=60)
    producer = make_app("kit_basic", settings=Settings(_environ=flower_env(kit_redis_url)))
    result = producer.send_task("kit_basic.add", (2, 3))
    assert result.get(timeout=60) == 5

    # Then Flower's task API shows the task with its final state
    def task_state() -> str | None:
        status, body = flower.get(f"/api/task/info/{result.id}", auth)
        return json.loads(body).get("state") if status == 200 else None

    assert wait_for(lambda: task_state() == "SUCCESS", timeout_s=60, what="task in Flower")

    # When Flower stops cleanly and starts again on the same state file
    flower.stop()
    assert list(tmp_path.glob("state*")), "Flower saved no state"
    again = start_flower("--basic-auth-file", str(secret), env=env, prefix="flower")
    # Then it still knows the task (persistent state)
    status, body = again.get(f"/api/task/info/{result.id}", auth)
    assert status == 200, body
    assert json.loads(body)["state"] == "SUCCESS"


def test_flower_in_headless_chromium(kit_redis_url: str, kit_worker, start_flower, tmp_path):
    from tests.integration.support.browser import Chromium, Page, find_chromium

    find_chromium()  # skip (or fail under CI) before starting anything
    # Given a worker and a Flower whose login the kit generated (printed once)
    worker = kit_worker("kit_basic", env=flower_env(kit_redis_url), pythonpath=[APPS])
    flower = start_flower("--generate-credentials", env=flower_env(kit_redis_url))
    found = re.search(r"generated login \(shown once[^)]*\):\s+(\S+?):(\S+)", flower.log())
    assert found, flower.log()
    user, password = found.groups()
    assert password.encode() not in Path(f"/proc/{flower.proc.pid}/cmdline").read_bytes()
    wait_for(
        lambda: worker_listed(flower, worker.hostname, basic(user, password)),
        timeout_s=60,
        what="worker in Flower",
    )
    browser = Chromium(tmp_path)
    try:
        asyncio.run(_browse(Page, browser.page_ws_url(), flower, worker.hostname, user, password))
    finally:
        browser.stop()


async def _browse(page_cls: Any, ws_url: str, flower: Flower, host: str, user: str, pw: str):
    page = await page_cls.open(ws_url)
    try:
        await page.send("Network.enable")
        await page.send("Page.enable")
        # When the browser asks without credentials, Then UI and API answer 401
        assert await page.navigate(f"{flower.base}/workers") == 401
        assert await page.navigate(f"{flower.base}/api/workers") == 401
        # When it sends the generated login, Then the workers page lists the worker
        await page.send("Network.setExtraHTTPHeaders", headers=basic(user, pw))
        assert await page.navigate(f"{flower.base}/workers") == 200
        assert host in await page.text("#workers-table")
        await page.screenshot(ARTIFACTS / "flower-workers.png")
        assert await page.navigate(f"{flower.base}/api/workers") == 200
    finally:
        page.close()


def documented_nginx_rule(flower_port: int) -> str:
    """The nginx block of docs/flower.md, pointed at this test's Flower."""
    doc = (Path(__file__).parents[2] / "docs" / "flower.md").read_text()
    block = doc.split("<!-- nginx-snippet -->", 1)[1].split("```nginx\n", 1)[1]
    return block.split("```", 1)[0].replace("127.0.0.1:5555", f"127.0.0.1:{flower_port}")


def test_documented_nginx_rule_keeps_metrics_and_healthcheck_private(
    kit_redis_url: str, start_flower, tmp_path: Path
) -> None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if nginx is None:
        pytest.skip("nginx not installed - the documented proxy rule is not exercised")
    # Given Flower under /flower and nginx configured with the documented block
    env = flower_env(kit_redis_url, FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}")
    flower = start_flower(env={**env, "CELERY_KIT_FLOWER__URL_PREFIX": "flower"}, prefix="flower")
    port, temp = free_port(), tmp_path / "nginx"
    temp.mkdir()
    temps = "".join(
        f"{kind}_temp_path {temp / kind};\n" for kind in ("client_body", "proxy", "fastcgi")
    )
    conf = temp / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {temp / 'nginx.pid'};\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temps}server {{\nlisten 127.0.0.1:{port};\n"
        f"{documented_nginx_rule(flower.port)}\n}}\n}}\n"
    )
    argv = [nginx, "-p", str(temp), "-c", str(conf), "-e", str(temp / "error.log")]
    with open(temp / "stdio.log", "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    try:
        proxy = f"http://127.0.0.1:{port}/flower"

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError((temp / "error.log").read_text(errors="replace"))
            try:
                return http_get(f"{proxy}/workers")[0] == 401
            except OSError:
                return False

        wait_for(up, timeout_s=30, what="nginx")
        # Then through the proxy the UI still needs the login, and works with it
        assert http_get(f"{proxy}/workers", basic(USER, PASSWORD))[0] == 200
        # and the unauthenticated endpoints are refused, also in disguise
        for path in ("/metrics", "/healthcheck", "/%6detrics", "//metrics", "/x/../metrics"):
            assert http_get(f"{proxy}{path}")[0] == 403, path
        # while Flower itself (loopback only) still serves them to local scrapers
        assert flower.get("/metrics")[0] == 200
    finally:
        stop_process(proc, signal.SIGTERM, group=True, timeout_s=10.0)


@pytest.mark.parametrize(
    ("args", "file_text", "expected"),
    [
        ([], None, ["FLOWER_BASIC_AUTH", "--basic-auth-file", "--allow-insecure"]),
        (["--basic-auth-file", "{dir}/missing"], None, ["missing does not exist"]),
        (["--basic-auth-file", "{dir}/users"], "ops-no-colon\n", ["line 1", "user:password"]),
    ],
    ids=["no-auth", "missing-file", "no-colon"],
)
def test_kit_flower_refuses_to_start_without_usable_auth(
    kit_redis_url: str, tmp_path: Path, args: list[str], file_text: str | None, expected: list
) -> None:
    if file_text is not None:
        (tmp_path / "users").write_text(file_text)
    port = free_port()
    argv = [sys.executable, "-m", "celery", "-A", "kit_basic", "kit", "flower"]
    argv += ["--port", str(port), *(a.format(dir=tmp_path) for a in args)]
    done = subprocess.run(
        argv, env=flower_env(kit_redis_url), cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    for text in expected:
        assert text in done.stderr, done.stderr
    assert "ops-no-colon" not in done.stderr  # never echo what may be a secret
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
