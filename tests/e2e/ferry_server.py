"""Start, stop and restart a real `ferry serve` process for the end-to-end tests.

The server is started on port 0; the test reads its stdout until the
`ferry ready s3=... admin=...` line shows the real URLs. Nothing here sleeps
to wait for the server: readiness is that line, shutdown is the exit code.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from s3util import make_client

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "ferry"

READY_RE = re.compile(r"^ferry ready s3=(?P<s3>https?://\S+) admin=(?P<admin>https?://\S+)\s*$")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

ADMIN_ACCESS_KEY = "ferry-admin"
ADMIN_SECRET_KEY = "ferry-admin-secret-123"

READER_ACCESS_KEY = "reader"
READER_SECRET_KEY = "reader-secret-123"
LIMITED_ACCESS_KEY = "limited"
LIMITED_SECRET_KEY = "limited-secret-123"
LIMITED_BUCKET = "allowed-bucket"

CONFIG_TOML = f"""\
[[credentials]]
access_key = "{READER_ACCESS_KEY}"
secret_key = "{READER_SECRET_KEY}"
read_only = true

[[credentials]]
access_key = "{LIMITED_ACCESS_KEY}"
secret_key = "{LIMITED_SECRET_KEY}"
buckets = ["{LIMITED_BUCKET}"]
"""


def ferry_bin() -> Path:
    return Path(os.environ.get("FERRY_BIN") or DEFAULT_BIN)


class FerryServer:
    """One `ferry serve` process bound to a data dir that outlives restarts."""

    def __init__(self, workdir: Path, config_text: str | None = CONFIG_TOML,
                 extra_args: list[str] | None = None):
        """extra_args are appended to the `ferry serve` command line (e.g.
        `["--domain", "localhost"]`)."""
        self.extra_args = list(extra_args or [])
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path: Path | None = None
        if config_text is not None:
            self.config_path = self.workdir / "ferry.toml"
            self.config_path.write_text(config_text)
        self.proc: subprocess.Popen | None = None
        self.s3_url: str | None = None
        self.admin_url: str | None = None
        self.stdout_lines: list[str] = []
        self._starts = 0
        self._stderr_path: Path | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "FerryServer":
        assert self.proc is None, "server already running"
        binary = ferry_bin()
        if not binary.exists():
            raise RuntimeError(f"ferry binary not found at {binary} (set FERRY_BIN)")
        self._starts += 1
        self._stderr_path = self.workdir / f"ferry-stderr-{self._starts}.log"
        cmd = [
            str(binary), "serve",
            "--data-dir", str(self.data_dir),
            "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0",
        ]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        cmd += self.extra_args
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        env["FERRY_ACCESS_KEY"] = ADMIN_ACCESS_KEY
        env["FERRY_SECRET_KEY"] = ADMIN_SECRET_KEY
        env.setdefault("RUST_BACKTRACE", "1")
        env["NO_COLOR"] = "1"
        stderr = open(self._stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                env=env, cwd=self.workdir, text=True, bufsize=1,
            )
        finally:
            stderr.close()  # the child holds its own copy

        lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump_stdout, args=(self.proc, lines), daemon=True).start()

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise RuntimeError(
                    f"ferry did not print its ready line within {START_TIMEOUT}s\n"
                    f"stdout so far: {self.stdout_lines!r}\n{self.stderr_tail()}"
                )
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the process died
                rc = self.proc.wait(timeout=STOP_TIMEOUT)
                self.proc = None
                raise RuntimeError(
                    f"ferry exited with code {rc} before it was ready\n"
                    f"stdout: {self.stdout_lines!r}\n{self.stderr_tail()}"
                )
            match = READY_RE.match(line.strip())
            if match:
                self.s3_url = match["s3"]
                self.admin_url = match["admin"]
                return self

    def _pump_stdout(self, proc: subprocess.Popen, lines: queue.Queue) -> None:
        # Keeps reading after the ready line too, so a chatty server never
        # blocks on a full pipe.
        assert proc.stdout is not None
        for line in proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))
            lines.put(line)
        lines.put(None)

    def stop(self, sig: int | None = signal.SIGTERM) -> int:
        """Send `sig` (None: send nothing, the caller already did) and wait
        for the exit; returns the exit code."""
        assert self.proc is not None, "server not running"
        proc, self.proc = self.proc, None
        if sig is not None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"ferry did not exit within {STOP_TIMEOUT}s of signal {sig}\n{self.stderr_tail()}")

    def kill(self) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def restart(self) -> int:
        """Graceful stop then start again on the same data dir; returns the exit code of the stop."""
        rc = self.stop()
        self.start()
        return rc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, limit: int = 4000) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return "(no stderr)"
        data = self._stderr_path.read_bytes()[-limit:]
        return "--- ferry stderr (tail) ---\n" + data.decode("utf-8", "replace")


class Clients:
    """Client factory bound to a server; URLs are read at call time so a
    restarted server (new port) gets new clients."""

    def __init__(self, srv: FerryServer):
        self.srv = srv

    def admin(self, **kw):
        return make_client(self.srv.s3_url, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, **kw)

    def reader(self, **kw):
        return make_client(self.srv.s3_url, READER_ACCESS_KEY, READER_SECRET_KEY, **kw)

    def limited(self, **kw):
        return make_client(self.srv.s3_url, LIMITED_ACCESS_KEY, LIMITED_SECRET_KEY, **kw)

    def with_keys(self, access_key, secret_key, **kw):
        return make_client(self.srv.s3_url, access_key, secret_key, **kw)
