"""HTTP over a plain socket, for what an HTTP client library will not do: announce a body and
stop sending it, or send headers that never end."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    #: bytes of the request body the client had sent when the answer came
    body_sent: int


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
    return sock


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def announce_body(
    url: str,
    method: str,
    path: str,
    declared: int,
    send: int,
    headers: dict[str, str] | None = None,
) -> RawAnswer:
    """Send a request whose Content-Length is `declared` bytes, but only the first `send` bytes
    of its body, then wait for the answer. A server that reads the body before answering never
    answers (the socket times out, failing the test)."""
    sock = _connect(url)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        lines.append(f"Content-Length: {declared}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        sock.sendall(b"{" + b" " * (send - 1))
        status, got, body = _read_answer(sock)
        return RawAnswer(status, got, body, send)
    finally:
        sock.close()


def endless_header(url: str, path: str, total: int) -> tuple[int | None, int]:
    """Send a GET whose one header grows to `total` bytes without ever ending the headers.
    Returns (the status answered, or None when the server only closed the connection; the
    header bytes sent before the server ended the exchange)."""
    sock = _connect(url)
    sent = 0
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode())
        piece = b"a" * 16384
        try:
            while sent < total:
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            status, _, _ = _read_answer(sock)
        except (ConnectionResetError, IndexError, ValueError):
            return None, sent
        return status, sent
    finally:
        sock.close()
