"""Each answer leaves in one socket write: what a connection writes in one turn of the event
loop is sent together, in order, and nothing gathered is lost when the connection closes."""

from __future__ import annotations

import asyncio
import socket

from relevo.server.protocol import CorkedTransport


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_turn_leave_in_one_call_in_order():
    async def scenario() -> Recorder:
        inner = Recorder()
        corked = CorkedTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        corked.write(b"{}")
        assert inner.writes == []  # not before the turn ends
        await asyncio.sleep(0)
        corked.write(b"next")
        await asyncio.sleep(0)
        assert corked.get_extra_info("peername") == "info:peername"  # the rest is the transport's
        return inner

    inner = asyncio.run(scenario())
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"next"]


def test_close_sends_what_was_gathered_first():
    async def scenario() -> Recorder:
        inner = Recorder()
        corked = CorkedTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"last words")
        corked.close()
        await asyncio.sleep(0)
        return inner

    inner = asyncio.run(scenario())
    assert inner.writes == [b"last words"] and inner.closed


def test_a_served_answer_arrives_whole_in_one_segment(tmp_path):
    """Over a real socket: head and body of an answer are read in a single recv."""

    async def scenario() -> bytes:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            corked = CorkedTransport(writer.transport, asyncio.get_running_loop())  # type: ignore[arg-type]
            corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            corked.write(b"hello")
            await asyncio.sleep(0.05)
            corked.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setblocking(False)
            first = await loop.sock_recv(sock, 65536)
        server.close()
        await server.wait_closed()
        return first

    assert asyncio.run(scenario()) == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
