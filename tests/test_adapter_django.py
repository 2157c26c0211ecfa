"""What only `streamfx.adapters.django.to_django` does: the response's ``close()``, which
Django calls, closes a body Django never iterated. Everything every adapter does,
Django's included under uvicorn and hypercorn: tests/test_adapter_contract*.py (the app
is tests/apps/django_app.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.test import RequestFactory

from streamfx.adapters.django import to_django
from tests._client import wait_until
from tests._stream_routes import make_routes
from tests.apps import django_app  # noqa: F401 - configures Django
from tests.apps.tally import Tally


async def test_close_closes_a_body_django_never_iterated() -> None:
    tally = Tally()
    routes = make_routes(tally, Path())
    request = RequestFactory().get("/lines")
    in_thread = await to_django(request, routes["/lines"]({"n": "100"}, ""))
    in_loop = await to_django(request, routes["/lines"]({"n": "100"}, ""))
    assert tally.started == 2
    assert tally.finalized == 0
    await sync_to_async(in_thread.close)()  # as Django calls it
    assert tally.finalized == 1
    in_loop.close()
    await wait_until(lambda: tally.finalized == 2, "the body closed from the loop")
    in_loop.close()
    in_thread.close()
    assert tally.finalized == 2
    assert tally.closes == 2  # once each, however often close() was called


async def test_write_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_timeout"):
        await to_django(
            RequestFactory().get("/"),
            make_routes(Tally(), Path())["/lines"]({}, ""),
            write_timeout=0,
        )
