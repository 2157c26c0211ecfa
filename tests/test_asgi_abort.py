"""Finding an ASGI connection's transport to abort it (streamfx/adapters/_asgi_abort.py).

Under a real server the behaviour is tested in test_adapter_asgi.py
(``test_uvicorn_drops_the_connection_of_an_evicted_client_without_an_error``); here are
the rules that decide when a transport is taken.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest

from streamfx.adapters._asgi_abort import abort_connection, connection_transport

Message = MutableMapping[str, Any]


class Transport:
    def __init__(self) -> None:
        self.aborted = 0
        self.closing = False

    def abort(self) -> None:
        self.aborted += 1
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


class Cycle:
    """Shaped like uvicorn's RequestResponseCycle: receive and send are its methods."""

    def __init__(self, transport: object) -> None:
        self.transport = transport

    async def receive(self) -> Message:
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        pass


async def wrapped_send(message: Message) -> None:
    pass


async def wrapped_receive() -> Message:
    return {"type": "http.disconnect"}


def test_the_transport_behind_receive_is_aborted_once() -> None:
    transport = Transport()
    cycle = Cycle(transport)
    scope = {"type": "http", "http_version": "1.1"}
    assert abort_connection(scope, cycle.receive, wrapped_send)
    assert not abort_connection(scope, cycle.receive, wrapped_send)  # already closing
    assert transport.aborted == 1


def test_send_is_tried_when_receive_is_wrapped() -> None:
    cycle = Cycle(Transport())
    scope = {"type": "http", "http_version": "1.0"}
    assert connection_transport(scope, wrapped_receive, cycle.send) is cycle.transport


@pytest.mark.parametrize("version", ["2", "3"])
def test_never_on_a_connection_shared_by_other_streams(version: str) -> None:
    transport = Transport()
    cycle = Cycle(transport)
    scope = {"type": "http", "http_version": version}
    assert not abort_connection(scope, cycle.receive, cycle.send)
    assert transport.aborted == 0


@pytest.mark.parametrize("transport", [None, object(), "abort"])
def test_nothing_without_something_that_can_abort(transport: object) -> None:
    cycle = Cycle(transport)
    scope = {"type": "http", "http_version": "1.1"}
    assert not abort_connection(scope, cycle.receive, cycle.send)
    assert not abort_connection(scope, wrapped_receive, wrapped_send)
