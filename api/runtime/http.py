"""uvicorn's HTTP/1.1 protocol with TCP_NODELAY on every connection.

asyncio turns Nagle's algorithm off only for sockets whose `proto` is TCP; uvicorn's listening socket for several
worker processes (`SHOKA_OPAC_WORKERS` above 1, the default on two cores or more) is made with proto 0, so its
connections kept Nagle on. A response written as headers and then body then waited for the client's delayed
acknowledgement: about 40 ms added to every search page a client asks for on a kept-alive connection
(docs/benchmarks.md, `script/bench http`).
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
