"""The soak's fuzzing of the SSE decoder (`bench.soak.fuzz`): its inputs include floods,
and its memory checks catch a decoder that keeps a flood whole (the issue's unbounded
decoder) while a bounded one passes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import Phase, given, settings

from bench.soak import fuzz
from streamfx import SSEDecoder

FLOOD = fuzz.FLOOD_PIECES[0]


def check(chunks: list[bytes]) -> fuzz.Findings:
    """One input through the decoder's fuzz test, as a generated one would go."""
    findings = fuzz.Findings()
    test: Any = fuzz.decoder_test(findings)
    test.hypothesis.inner_test(chunks)
    return findings


def unlimited(**_: int) -> SSEDecoder:
    return SSEDecoder(max_line=1 << 40, max_event=1 << 40)


@pytest.mark.parametrize("piece", fuzz.FLOOD_PIECES)
def test_a_decoder_that_keeps_a_flood_whole_is_caught(
    traced: None, monkeypatch: pytest.MonkeyPatch, piece: bytes
) -> None:
    monkeypatch.setattr(fuzz, "SSEDecoder", unlimited)
    chunks = [bytes(bytearray(piece)) for _ in range(32)]  # 1 MiB, distinct objects
    assert "memory held past the bound" in check(chunks).failures


@pytest.mark.parametrize("piece", fuzz.FLOOD_PIECES)
def test_the_bounded_decoder_passes_a_flood(traced: None, piece: bytes) -> None:
    chunks = [bytes(bytearray(piece)) for _ in range(64)]
    assert check(chunks).failures == {}


def test_the_generated_inputs_include_floods_past_the_bound() -> None:
    sizes: list[tuple[int, int]] = []  # (bytes, chunks) of each input

    @settings(database=None, max_examples=200, phases=[Phase.generate])
    @given(fuzz.sse_streams())
    def generated(chunks: list[bytes]) -> None:
        sizes.append((sum(map(len, chunks)), len(chunks)))

    generated()
    # several in each run, in many chunks: the decoder would hold them across feeds
    assert sum(1 for size, count in sizes if size > 2 * fuzz.DECODER_FEEDING and count > 16) > 5


class Wasteful(SSEDecoder):
    """A bounded decoder that makes (and drops) a 1 MiB copy of every chunk it parses."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> list[Any]:
        waste = bytes(bytearray(1 << 20))
        del waste
        return super().feed(chunk)


def test_memory_used_while_parsing_is_caught_however_big_the_input(
    traced: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The growth counts from before the first chunk: the input, traced before, is not
    subtracted from it (a 2 MiB flood once hid a 1 MiB waste)."""
    monkeypatch.setattr(fuzz, "SSEDecoder", lambda **limits: Wasteful(**limits))
    chunks = [bytes(bytearray(FLOOD)) for _ in range(64)]
    assert "memory past the bound" in check(chunks).failures


def test_the_events_a_feed_returns_are_not_the_decoders_memory(traced: None) -> None:
    """20,000 events from one chunk (some 5 MB of them) are the caller's: a bounded
    decoder passes."""
    findings = check([b"data: x\n\n" * 20_000])
    assert findings.failures == {}
    assert 0 < findings.peak_over <= fuzz.DECODER_FEEDING
