"""What Ferry ships for deployment holds no fixed secret and publishes no
admin or peer port to the host's network; its image runs unprivileged and
checks its own health."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from urllib.parse import urlparse

import yaml
from ferry_server import ferry_bin

DOCKER = pathlib.Path(__file__).resolve().parents[2] / "docker"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)
PUBLIC_PORTS = {9000}
# A secret the operator must export: compose stops with the message when
# it is unset, and there is no default to fall back on.
REQUIRED_FROM_ENV = re.compile(r"^\$\{\w+:\?[^}]+\}$")
FLEET_SERVICES = {"redis", "certs", "origin", "origin-bucket", "ferry-1", "ferry-2", "ferry-3", "mirror"}


def _environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def _assert_no_secret_in_file(name, service, required_ok):
    for var, value in _environment(service).items():
        if not SECRET_NAME.search(var):
            continue
        if value is None:
            continue  # passed through from the operator's shell
        # Never a value (or a ${VAR:-default}) written in the file.
        assert required_ok and REQUIRED_FROM_ENV.match(str(value)), (
            f"{name}: {var} has a value in the file: {value!r}"
        )


def _published(service):
    """(host address or None, container port) of each published port."""
    for port in service.get("ports") or []:
        spec = str(port)
        parts = spec.split(":")
        host_ip = parts[0] if len(parts) == 3 else None
        yield host_ip, int(parts[-1].split("/")[0]), spec


def test_compose_ships_no_secret_and_publishes_only_the_s3_port():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert services
    for name, service in services.items():
        _assert_no_secret_in_file(name, service, required_ok=False)
        for host_ip, container_port, spec in _published(service):
            if container_port not in PUBLIC_PORTS:
                assert host_ip in ("127.0.0.1", "::1"), (
                    f"{name}: port {container_port} is published beyond loopback ({spec})"
                )


def _fleet():
    return yaml.safe_load((DOCKER / "fleet.yaml").read_text())["services"]


def test_fleet_requires_every_secret_and_publishes_only_s3_ports():
    services = _fleet()
    assert FLEET_SERVICES <= set(services), set(services)
    for name, service in services.items():
        _assert_no_secret_in_file(name, service, required_ok=True)
        for _, container_port, spec in _published(service):
            assert container_port in PUBLIC_PORTS, f"{name}: a non-S3 port is published ({spec})"
    for name in ("redis", "origin", "origin-bucket", "certs"):
        assert not services[name].get("ports"), f"{name} is published"
    nodes = ("ferry-1", "ferry-2", "ferry-3")
    for name in nodes:
        env = _environment(services[name])
        for var in ("FERRY_CLUSTER_SECRET", "FERRY_FEED_SECRET", "FERRY_ADMIN_TOKEN",
                    "FERRY_ACCESS_KEY", "FERRY_SECRET_KEY"):
            assert REQUIRED_FROM_ENV.match(str(env.get(var))), f"{name}: {var} is not required"
    command = services["redis"]["command"]
    assert " ".join(command).endswith("--appendonly yes --appendfsync everysec"), command


def test_fleet_starts_each_service_after_what_it_needs():
    services = _fleet()

    def needs(name):
        return services[name].get("depends_on") or {}

    for name in ("ferry-1", "ferry-2", "ferry-3", "mirror"):
        deps = needs(name)
        assert deps["redis"]["condition"] == "service_healthy", name
        assert deps["certs"]["condition"] == "service_completed_successfully", name
        assert deps["origin-bucket"]["condition"] == "service_completed_successfully", name
    assert needs("mirror")["ferry-1"]["condition"] == "service_healthy"
    assert needs("origin-bucket")["origin"]["condition"] == "service_healthy"


def _mounted_config(service):
    """The file of docker/ mounted as the service's config, read-only."""
    for volume in service.get("volumes") or []:
        source, _, rest = str(volume).partition(":")
        target, _, mode = rest.partition(":")
        if target == "/etc/ferry/ferry.toml":
            assert mode == "ro", f"{volume} is not mounted read-only"
            return DOCKER / source
    return None


def test_fleet_configs_pass_config_check(tmp_path):
    # The certificates the `certs` service would make, made here by the
    # same script, stand in for the volume mounted at /certs.
    certs = tmp_path / "certs"
    made = subprocess.run(["sh", str(DOCKER / "fleet" / "make-certs.sh"), str(certs)],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    assert (certs / "fleet-ca.crt").is_file()
    checked = []
    for name, service in _fleet().items():
        config = _mounted_config(service)
        if config is None:
            continue
        assert config.is_file(), f"{name} mounts {config}, which does not exist"
        local = tmp_path / f"{name}.toml"
        local.write_text(config.read_text().replace("/certs/", f"{certs}/"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        for var in _environment(service):
            env[var] = "a-dummy-value-of-24-chars"
        env["HOSTNAME"] = service.get("hostname", name)
        result = subprocess.run([str(ferry_bin()), "config", "check", str(local)],
                                capture_output=True, text=True, env=env, check=False)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        checked.append(name)
    assert set(checked) == {"origin", "ferry-1", "ferry-2", "ferry-3", "mirror"}, checked


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
