"""How uvicorn runs relevo: connection limits, and a cap on request headers.

uvicorn's fast HTTP parser (httptools) accepts request headers of any size (a 100 MiB header was
read into memory), and only its slower h11 parser has a cap (`h11_max_incomplete_event_size`).
`HeaderCappedHttpTools` keeps httptools and adds the same cap: a request whose request line and
headers pass RELEVO_MAX_HEADER_KB is answered 431 and its connection closed.

It also sends each answer with one socket write: uvicorn writes a response's head and its body
with a write each, and on loopback those two `send` calls were a quarter of the event loop's
time under load (py-spy, cheap model at c=32). `CorkedTransport` gathers what a connection
writes during one turn of the event loop and sends it at the end of that turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from relevo.settings import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: uvicorn's h11 parser enforces the cap
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

_HEADER_CAPPED = "relevo.server.protocol:HeaderCappedHttpTools"


class CorkedTransport:
    """A transport whose writes in one turn of the event loop leave in one `write` call at
    the end of that turn (a response's head and body: one `send` instead of two). Everything
    else is the wrapped transport's; closing sends what is gathered first."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


if HttpToolsProtocol is not None:

    class HeaderCappedHttpTools(HttpToolsProtocol):
        """uvicorn's httptools protocol, refusing headers larger than the configured cap,
        writing each answer with one `send`."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            corked = CorkedTransport(transport, self.loop)
            super().connection_made(corked)  # type: ignore[arg-type]

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_cap: int = self.config.h11_max_incomplete_event_size or 64 * 1024
            self._header_bytes = 0
            self._in_headers = True  # until the first request's headers are complete
            self._tail = b""  # the last bytes read, where a blank line may have begun

        def data_received(self, data: bytes) -> None:
            if self._in_headers:
                # the headers end at the first blank line (which may straddle two reads);
                # count only what comes before it, never the body behind it
                tail = self._tail
                end = (tail + data).find(b"\r\n\r\n")
                self._header_bytes += len(data) if end < 0 else max(end - len(tail), 0)
                self._tail = data[-3:]
                if self._header_bytes > self._header_cap:
                    if not self.transport.is_closing():
                        self._refuse()
                    return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._header_bytes = 0
            self._tail = b""
            super().on_headers_complete()

        def _refuse(self) -> None:
            self.logger.warning("Request headers larger than %d bytes refused.", self._header_cap)
            body = b'{"error": "the request headers are too large (RELEVO_MAX_HEADER_KB)"}'
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body
            )
            self.transport.close()


def uvicorn_options(
    settings: Settings, proxy_headers: bool = False, forwarded_allow_ips: str | None = None
) -> dict[str, Any]:
    """The uvicorn settings relevo serves with (`relevo serve`, the background server)."""
    return {
        "http": _HEADER_CAPPED if HttpToolsProtocol is not None else "h11",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keep_alive_s,
        # X-Forwarded-For/-Proto are believed only when asked: behind a proxy that sets them
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": forwarded_allow_ips,
    }
