"""A TCP forwarder on 127.0.0.1 that a test can cut: a service (Redis) going away mid-test, with no process of its
own to stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
from anyio.abc import Listener, SocketAttribute, SocketStream


class TcpProxy:
    def __init__(self, listener: Listener[SocketStream], host: str, port: int) -> None:
        self.port: int = listener.extra(SocketAttribute.local_port)
        self._listener, self._host, self._port = listener, host, port
        self._serving = anyio.CancelScope()
        self._stopped = anyio.Event()

    async def serve(self) -> None:
        try:
            with self._serving:
                async with self._listener:
                    await self._listener.serve(self._forward)
        finally:
            self._stopped.set()

    async def cut(self) -> None:
        """Close every forwarded connection and stop listening; returns once both are done."""
        self._serving.cancel()
        await self._stopped.wait()

    async def _forward(self, client: SocketStream) -> None:
        async with client, await anyio.connect_tcp(self._host, self._port) as upstream, anyio.create_task_group() as tg:

            async def pipe(source: SocketStream, sink: SocketStream) -> None:
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    async for chunk in source:
                        await sink.send(chunk)
                tg.cancel_scope.cancel()  # one side is gone: so is the connection

            tg.start_soon(pipe, client, upstream)
            tg.start_soon(pipe, upstream, client)


@asynccontextmanager
async def tcp_proxy(host: str, port: int) -> AsyncIterator[TcpProxy]:
    """Forward what reaches 127.0.0.1:`proxy.port` to `host`:`port`, until the block ends or `cut()`."""
    proxy = TcpProxy(await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0), host, port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(proxy.serve)
        yield proxy
        await proxy.cut()
