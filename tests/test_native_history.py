"""pygw._native HistoryBuffers: offsets, retention, ttl, recovery and epochs."""

from __future__ import annotations

import json
import re
import time

import pytest

from pygw._native import HistoryBuffers, encode_message

T0 = 5000.0


def data(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


def fill(
    buffers: HistoryBuffers, channel: str, count: int, size: int = 10, ttl: float = 0.0
) -> str:
    epoch = ""
    for n in range(1, count + 1):
        _, epoch, _ = buffers.publish(channel, data(n), size, ttl, now=T0)
    return epoch


def test_publish_returns_offset_epoch_and_envelope() -> None:
    buffers = HistoryBuffers()
    offset, epoch, envelope = buffers.publish("chat:1", b'{"text": "hi"}', 10, 0.0, now=T0)
    assert offset == 1
    assert re.fullmatch(r"[0-9a-f]{16}", epoch)
    assert envelope == encode_message("chat:1", b'{"text": "hi"}', 1)
    offset2, epoch2, envelope2 = buffers.publish("chat:1", b"[1]", 10, 0.0, now=T0)
    assert (offset2, epoch2) == (2, epoch)
    assert json.loads(envelope2) == {
        "type": "message",
        "channel": "chat:1",
        "data": [1],
        "offset": 2,
    }


def test_channels_have_their_own_offsets_and_epochs() -> None:
    buffers = HistoryBuffers()
    epoch_a = fill(buffers, "a", 3)
    epoch_b = fill(buffers, "b", 1)
    assert buffers.top("a") == (epoch_a, 3)
    assert buffers.top("b") == (epoch_b, 1)
    assert epoch_a != epoch_b
    assert len(buffers) == 2


def test_size_bounds_retention() -> None:
    buffers = HistoryBuffers()
    fill(buffers, "c", 8, size=3)
    assert buffers.history("c") == [(6, data(6)), (7, data(7)), (8, data(8))]
    assert buffers.history("c", since=6) == [(7, data(7)), (8, data(8))]
    assert buffers.history("c", since=0, limit=2) == [(6, data(6)), (7, data(7))]
    assert buffers.history("c", since=8) == []
    assert buffers.history("c", limit=0) == []


def test_size_zero_retains_nothing_but_counts() -> None:
    buffers = HistoryBuffers()
    fill(buffers, "c", 2, size=5)
    offset, epoch, envelope = buffers.publish("c", data(3), 0, 0.0, now=T0)
    assert offset == 3
    assert envelope == encode_message("c", data(3), 3)
    assert buffers.history("c") == []
    assert buffers.top("c") == (epoch, 3)


def test_ttl_expires_publications() -> None:
    buffers = HistoryBuffers()
    buffers.publish("c", data(1), 10, 5.0, now=T0)
    buffers.publish("c", data(2), 10, 5.0, now=T0 + 3)
    assert [o for o, _ in buffers.history("c", now=T0 + 4.9)] == [1, 2]
    assert [o for o, _ in buffers.history("c", now=T0 + 5.0)] == [2]
    assert buffers.history("c", now=T0 + 8.0) == []
    assert buffers.top("c")[1] == 2, "offsets survive expiry"


def test_prune_counts_expired_publications_and_keeps_streams() -> None:
    buffers = HistoryBuffers()
    epoch = fill(buffers, "short", 3, ttl=1.0)
    fill(buffers, "forever", 3)
    assert buffers.prune(now=T0 + 0.5) == 0
    assert buffers.prune(now=T0 + 1.0) == 3
    assert buffers.prune(now=T0 + 100) == 0
    assert len(buffers) == 2
    assert buffers.top("short") == (epoch, 3)
    assert len(buffers.history("forever", now=T0 + 100)) == 3


def test_recover_everything_missed() -> None:
    buffers = HistoryBuffers()
    epoch = fill(buffers, "c", 5)
    envelopes, recovered, current, top = buffers.recover("c", epoch, 2, now=T0)
    assert (recovered, current, top) == (True, epoch, 5)
    assert envelopes == [encode_message("c", data(n), n) for n in (3, 4, 5)]


def test_recover_at_top() -> None:
    buffers = HistoryBuffers()
    epoch = fill(buffers, "c", 2)
    assert buffers.recover("c", epoch, 2, now=T0) == ([], True, epoch, 2)


def test_recover_with_a_gap_is_partial() -> None:
    buffers = HistoryBuffers()
    epoch = fill(buffers, "c", 6, size=2)
    envelopes, recovered, _, top = buffers.recover("c", epoch, 3, now=T0)
    assert not recovered and top == 6
    assert envelopes == [encode_message("c", data(n), n) for n in (5, 6)]
    # Exactly at the edge of what is retained: complete.
    assert buffers.recover("c", epoch, 4, now=T0)[1] is True


def test_recover_after_expiry_is_partial() -> None:
    buffers = HistoryBuffers()
    epoch = fill(buffers, "c", 2, ttl=10.0)
    assert buffers.recover("c", epoch, 0, now=T0 + 1)[1] is True
    assert buffers.recover("c", epoch, 0, now=T0 + 10) == ([], False, epoch, 2)
    assert buffers.recover("c", epoch, 2, now=T0 + 10)[1] is True


def test_recover_with_another_epoch_fails() -> None:
    buffers = HistoryBuffers()
    epoch = fill(buffers, "c", 3)
    assert buffers.recover("c", "0000000000000000", 1, now=T0) == ([], False, epoch, 3)


def test_recover_from_beyond_top_fails() -> None:
    buffers = HistoryBuffers()
    epoch = fill(buffers, "c", 3)
    assert buffers.recover("c", epoch, 4, now=T0) == ([], False, epoch, 3)


def test_unknown_channel_gets_a_stable_stream() -> None:
    buffers = HistoryBuffers()
    _, recovered, epoch, top = buffers.recover("new", "client-epoch", 0, now=T0)
    assert (recovered, top) == (False, 0)
    assert buffers.top("new") == (epoch, 0)
    assert buffers.recover("new", epoch, 0, now=T0) == ([], True, epoch, 0)
    offset, publish_epoch, _ = buffers.publish("new", b"1", 5, 0.0, now=T0)
    assert (offset, publish_epoch) == (1, epoch)
    assert buffers.recover("new", epoch, 0, now=T0)[:2] == ([encode_message("new", b"1", 1)], True)


def test_history_does_not_create_streams() -> None:
    buffers = HistoryBuffers()
    assert buffers.history("nothing") == []
    assert len(buffers) == 0
    buffers.top("something")
    assert len(buffers) == 1


def test_remove_starts_a_new_epoch() -> None:
    buffers = HistoryBuffers()
    epoch = fill(buffers, "c", 3)
    buffers.remove("c")
    buffers.remove("never-existed")
    assert len(buffers) == 0
    offset, new_epoch, _ = buffers.publish("c", data(1), 10, 0.0, now=T0)
    assert offset == 1 and new_epoch != epoch
    assert buffers.recover("c", epoch, 3, now=T0)[1] is False


def test_default_now_is_the_wall_clock() -> None:
    buffers = HistoryBuffers()
    buffers.publish("c", data(1), 10, 60.0)
    assert len(buffers.history("c", now=time.time() + 59)) == 1
    assert buffers.history("c", now=time.time() + 61) == []


@pytest.mark.parametrize("ttl", [-1.0, float("nan"), float("inf")])
def test_invalid_ttl(ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        HistoryBuffers().publish("c", b"1", 10, ttl, now=T0)
