"""tools.drills.analysis: which conversation moves a consistent-hash ring could not have made."""

from __future__ import annotations

from tools.drills import analysis
from tools.drills.records import PodEvent, RequestRecord


def _stream(conversation: str, endpoint: str, start: float, end: float) -> RequestRecord:
    return RequestRecord(kind="stream", start=start, end=end, status=200, endpoint=endpoint,
                         conversation=conversation)


EVENTS = [PodEvent(0.0, "a", "ready"), PodEvent(0.0, "b", "ready"), PodEvent(10.0, "c", "ready"),
          PodEvent(20.0, "a", "terminating")]


def test_a_move_to_a_pod_that_joined_or_away_from_one_that_left_is_the_ring_working():
    records = [_stream("k1", "a", 1, 2), _stream("k1", "c", 11, 12),   # c joined at 10
               _stream("k2", "a", 15, 16), _stream("k2", "b", 21, 22)]  # a left at 20
    assert analysis.affinity_breaks(records, EVENTS) == []


def test_a_move_between_two_pods_that_were_both_there_is_a_break_unless_the_first_was_busy():
    records = [_stream("k1", "a", 1, 2), _stream("k1", "b", 3, 4)]
    assert analysis.affinity_breaks(records, EVENTS) == [("k1", "a", "b", 3)]
    # Bounded load may turn a busy pod away: another stream in flight on a at 3 excuses it.
    busy = [*records, _stream("k9", "a", 2.5, 5)]
    assert analysis.affinity_breaks(busy, EVENTS) == []
