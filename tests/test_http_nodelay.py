"""The OPAC's and staff app's connections have Nagle's algorithm off, also behind the socket uvicorn makes for
several worker processes (proto 0, which asyncio leaves alone): else a response written in two parts waits for
the client's delayed acknowledgement (api/runtime/http.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.request
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.runtime.http import NoDelayH11Protocol


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def nodelay_of_connections(protocol: type[H11Protocol]) -> list[int]:
    """TCP_NODELAY of the server side of one connection, served through `protocol` behind a listening socket
    made as uvicorn makes it for several workers."""
    seen: list[int] = []

    class Recording(protocol):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            seen.append(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    listener = socket.socket(family=socket.AF_INET)  # proto 0, as uvicorn.Config.bind_socket
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, http=Recording, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.read() == b"ok"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
    return seen


def test_connections_behind_a_shared_socket_have_nagle_off() -> None:
    assert len(seen := nodelay_of_connections(NoDelayH11Protocol)) == 1 and seen[0] != 0


def test_without_it_they_would_not() -> None:
    """The premise: uvicorn's own protocol leaves Nagle on behind such a socket (should this fail, uvicorn sets
    TCP_NODELAY itself and NoDelayH11Protocol can go)."""
    assert nodelay_of_connections(H11Protocol) == [0]
