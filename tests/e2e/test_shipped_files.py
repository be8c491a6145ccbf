"""What Ferry ships for deployment holds no fixed secret and publishes no
admin or peer port to the host's network."""

import pathlib
import re

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
