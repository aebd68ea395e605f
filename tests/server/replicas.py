"""Several `relevo serve` processes and nginx (Debian's package) in front of them, on loopback:
the pieces of the scale-out tests. Every process runs in its own process group, stopped by id."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One `relevo serve` process with its own home (and so its own log spool and cache)."""

    def __init__(self, name: str, home: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "RELEVO_HOME": str(home)}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = ""

    def start(self, timeout_s: float = 90.0) -> Replica:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relevo", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise AssertionError(f"replica {self.name} died while starting:\n{out}")
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"replica {self.name} did not become ready:\n{self.output}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> str:
        """Signal the replica's process group and wait for it; returns its output."""
        if self.proc is None or self.proc.returncode is not None:
            return self.output
        os.killpg(self.proc.pid, sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
        self.output = out.decode(errors="replace") if out else ""
        return self.output


class Nginx:
    """nginx as a non-daemon process with its own prefix, pid file and logs, balancing the
    given upstream addresses round-robin; a refused or reset connection (a replica that
    stopped) is retried on the next upstream, POST included."""

    def __init__(self, folder: Path, upstreams: list[str]) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"    server {u} max_fails=1 fail_timeout=30s;" for u in upstreams)
        temp = "\n".join(
            f"  {kind}_temp_path {folder}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.config = folder / "nginx.conf"
        self.config.write_text(
            f"""daemon off;
master_process on;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log {folder}/access.log;
{temp}
  upstream relevo {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{self.port};
    client_max_body_size 16m;
    location / {{
      proxy_pass http://relevo;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 2s;
      proxy_read_timeout 60s;
      add_header X-Upstream $upstream_addr always;
    }}
  }}
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> Nginx:
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.folder), "-c", str(self.config), "-e", str(self.error_log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not start: {self.errors()}")

    @property
    def error_log(self) -> Path:
        return self.folder / "error.log"

    def errors(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        os.killpg(self.proc.pid, signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
