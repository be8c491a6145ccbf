"""What Ferry ships for deployment holds no fixed secret and publishes no
admin or peer port to the host's network; its image runs unprivileged and
checks its own health."""

import json
import pathlib
import re
import shutil
import subprocess
import sys
from urllib.parse import urlparse

import yaml

DOCKER = pathlib.Path(__file__).resolve().parents[2] / "docker"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)
PUBLIC_PORTS = {9000}


def _environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_compose_ships_no_secret_and_publishes_only_the_s3_port():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert services
    for name, service in services.items():
        for var, value in _environment(service).items():
            if SECRET_NAME.search(var):
                # Passed through from the operator's shell, never a value
                # (or a ${VAR:-default}) written in the file.
                assert value is None, f"{name}: {var} has a value in the file: {value!r}"
        for port in service.get("ports") or []:
            spec = str(port)
            parts = spec.split(":")
            host_ip = parts[0] if len(parts) == 3 else None
            container_port = int(parts[-1].split("/")[0])
            if container_port not in PUBLIC_PORTS:
                assert host_ip in ("127.0.0.1", "::1"), (
                    f"{name}: port {container_port} is published beyond loopback ({spec})"
                )


def _dockerfile_stages(text):
    """The Dockerfile's instructions, (KEYWORD, arguments) per stage."""
    text = re.sub(r"\\\n", " ", text)  # continuation lines
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        assert stages, f"an instruction before the first FROM: {line}"
        stages[-1].append((keyword, args.strip()))
    return stages


def _exec_form(args):
    """The argument list of an exec-form instruction (a JSON array)."""
    assert args.startswith("["), f"not in exec form: {args}"
    return json.loads(args)


def _flag(argv, name):
    return argv[argv.index(name) + 1]


def test_dockerfile_builds_in_one_stage_and_runs_unprivileged_in_another():
    stages = _dockerfile_stages((DOCKER / "Dockerfile").read_text())
    assert len(stages) >= 2, "multi-stage: a builder and a runtime image"
    final = stages[-1]
    assert any(k == "COPY" and "--from=" in a for k, a in final), "the binary comes from the builder"

    users = [a for k, a in final if k == "USER"]
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"runs as {users[-1]}"

    # No secret is baked into the image, nor its build history.
    for stage in stages:
        for keyword, args in stage:
            if keyword in ("ENV", "ARG"):
                name = re.split(r"[= ]", args, maxsplit=1)[0]
                assert not SECRET_NAME.search(name), f"{keyword} {args}"

    assert any(k == "VOLUME" and "/data" in a for k, a in final)
    exposed = {p for k, a in final if k == "EXPOSE" for p in a.split()}
    assert {"9000", "9001"} <= exposed, exposed


def test_dockerfile_health_check_asks_ferry_health_on_the_admin_port():
    final = _dockerfile_stages((DOCKER / "Dockerfile").read_text())[-1]
    checks = [a for k, a in final if k == "HEALTHCHECK"]
    assert len(checks) == 1, checks
    command = _exec_form(checks[0].split(" CMD ", 1)[1].strip())
    assert command[:2] == ["ferry", "health"], command
    entrypoint = _exec_form(next(a for k, a in final if k == "ENTRYPOINT"))
    admin_port = _flag(entrypoint, "--admin-listen").rsplit(":", 1)[1]
    probed = urlparse(_flag(command, "--admin")) if "--admin" in command else urlparse("http://127.0.0.1:9001")
    assert probed.hostname == "127.0.0.1" and str(probed.port) == admin_port, (command, entrypoint)


def test_dockerfile_passes_hadolint():
    # Installed with the test requirements, next to this interpreter.
    hadolint = shutil.which("hadolint", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is in tests/requirements.txt"
    result = subprocess.run([hadolint, "--no-color", str(DOCKER / "Dockerfile")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
