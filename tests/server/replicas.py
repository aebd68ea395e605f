"""Several `relevo serve` processes and nginx (Debian's package) in front of them, on loopback,
and the load and probes the scale-out tests send them. Every process runs in its own process
group, stopped by id."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

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


PREDICT = "/v1/deployments/churn/predict"


@dataclass
class Sent:
    """One request of the load, as the caller saw it."""

    sent: float
    done: float
    status: int
    upstream: str
    keys: list[Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


class Load:
    """Threads posting keyed rows through nginx until stopped."""

    def __init__(self, url: str, rows: list[dict[str, Any]], threads: int = 4) -> None:
        self.url = url
        self.rows = rows
        self.results: list[Sent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    @property
    def count(self) -> int:
        return len(self.results)

    def wait_for(self, more: int, timeout_s: float = 120.0) -> None:
        target = self.count + more
        deadline = time.monotonic() + timeout_s
        while self.count < target:
            assert time.monotonic() < deadline, f"the load stalled at {self.count} requests"
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def _run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                chosen = [self.rows[i] for i in rng.integers(0, len(self.rows), 5)]
                keys = [r["customer_id"] for r in chosen]
                sent = time.time()
                try:
                    answer = client.post(self.url, json={"instances": chosen})
                except httpx.TransportError as exc:
                    result = Sent(sent, time.time(), 0, "", keys, error=repr(exc))
                else:
                    body = answer.json() if answer.status_code == 200 else {}
                    result = Sent(
                        sent,
                        time.time(),
                        answer.status_code,
                        answer.headers.get("x-upstream", ""),
                        keys,
                        body.get("predictions", []),
                        "" if answer.status_code == 200 else answer.text[:300],
                    )
                with self._lock:
                    self.results.append(result)


class Probe:
    """Asks one replica directly, every 50 ms, which model answers each of a fixed set of keys."""

    def __init__(self, replica: Replica, rows: list[dict[str, Any]]) -> None:
        self.replica = replica
        self.rows = rows
        self.seen: list[tuple[float, list[str], list[str]]] = []  # (time, models, ids)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        url = f"{self.replica.url}{PREDICT}"
        with httpx.Client(timeout=60) as client:
            while not self._stop.wait(0.05):
                answer = client.post(url, json={"instances": self.rows})
                if answer.status_code != 200:
                    self.errors.append(f"{answer.status_code}: {answer.text[:300]}")
                    continue
                got = answer.json()["predictions"]
                self.seen.append((time.time(), [p["model"] for p in got], [p["id"] for p in got]))

    def first_match(self, expected: list[str], since: float) -> float | None:
        """When this replica first answered `expected` after `since`; None if never. After
        that moment it must never answer anything else (a replica that slips back to the old
        state would be a bug)."""
        found = None
        for at, models, _ in self.seen:
            if at < since:
                continue
            if found is None and models == expected:
                found = at
            elif found is not None:
                assert models == expected, f"{self.replica.name} went back to the old routing"
        return found

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
