"""Broadcast: one publisher, many subscribers, lossless resume after a reconnect.

::

    from streamfx.broadcast import Broadcast

    hub = Broadcast()                      # in process; nothing to start
    await hub.publish("job-42", {"progress": 10})          # -> the event's id
    response = hub.sse("job-42", last_event_id=request_last_event_id)

`Broadcast` is the hub (see `streamfx.broadcast.hub` for its promises and
`streamfx.broadcast._subscription` for a subscriber's). With no backend it keeps each
topic's history in this process; `RedisStreamsBackend` (``pip install
'streamfx[redis]'``) shares topics across processes and machines, one reading
connection per process. `BroadcastError` is what a publish raises when the event
could not be stored, and what `subscribe` raises once the hub is closing.

The design in one sentence: a publish is encoded once into a per-topic log of frames;
a subscriber is a cursor into that log (no task and no queue per subscriber), which
writes everything it has not written yet in one chunk, and whose ``Last-Event-ID``
names its position so a reconnect resumes exactly where it left off, or gets exactly
one ``reset`` event when the history no longer reaches back that far.

Why hand-written: no Python library offers a retained, replayable fan-out (peers give
each client its own unbounded queue and no replay); the in-process part is a ring of
bytes and a set of futures, and the Redis part is a thin use of redis-py.
"""

from streamfx.broadcast.errors import BroadcastError
from streamfx.broadcast.hub import Broadcast
from streamfx.broadcast.redis_streams import RedisStreamsBackend

__all__ = ["Broadcast", "BroadcastError", "RedisStreamsBackend"]
