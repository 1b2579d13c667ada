"""The shared collector socket: reusable by several processes, and its connections get TCP_NODELAY like
uvicorn's own (without it every answer waits for the client's delayed ACK)."""

from __future__ import annotations

import asyncio
import socket

from cdp.collectors import reuse_port_socket


def test_two_sockets_bind_one_port() -> None:
    first = reuse_port_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        second = reuse_port_socket("127.0.0.1", port)  # without SO_REUSEPORT: OSError, address in use
        try:
            assert second.getsockname()[1] == port
        finally:
            second.close()
    finally:
        first.close()


def test_accepted_connections_have_nodelay() -> None:
    async def main() -> int:
        sock = reuse_port_socket("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted = writer.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
            value = await asyncio.wait_for(seen, 5)
            writer.close()
        return value

    assert asyncio.run(main()) != 0
