"""Refused records reach the log at INFO without a line per record: the first of each
(topic, reason) in a minute, with how many were refused since the last such line."""

from __future__ import annotations

import logging

import pytest

from collectors.kafka.client import Record
from collectors.records import RejectionLog
from monitor.events import Rejection, RejectReason


def _refused(topic: str, reason: RejectReason, n: int, offset: int = 0
             ) -> list[tuple[Record, Rejection]]:
    return [(Record(topic, 0, offset + i, b"x", (), 0), Rejection(reason, "why", b"x"))
            for i in range(n)]


def test_the_first_rejection_of_a_reason_is_logged_with_its_detail() -> None:
    lines = RejectionLog().note(_refused("p", RejectReason.INVALID_JSON, 1, offset=7), 100.0)
    assert lines == ["p: record refused (invalid_json: why) at partition 0 offset 7; "
                     "1 refused for this reason since the last such line"]


def test_more_of_the_same_reason_within_a_minute_are_counted_not_logged() -> None:
    log = RejectionLog()
    assert len(log.note(_refused("p", RejectReason.INVALID_JSON, 1000), 100.0)) == 1
    assert log.note(_refused("p", RejectReason.INVALID_JSON, 5), 159.9) == []


def test_the_first_one_after_a_minute_carries_the_count_since_the_last_line() -> None:
    log = RejectionLog()
    log.note(_refused("p", RejectReason.INVALID_JSON, 3), 100.0)   # logged: 1, then 2 held
    log.note(_refused("p", RejectReason.INVALID_JSON, 4), 130.0)   # held: 6
    lines = log.note(_refused("p", RejectReason.INVALID_JSON, 2), 160.0)
    assert len(lines) == 1 and lines[0].endswith("; 7 refused for this reason since the last "
                                                 "such line")


@pytest.mark.parametrize("other", [("p", RejectReason.UNKNOWN_MODEL),
                                   ("f", RejectReason.INVALID_JSON)])
def test_each_topic_and_reason_has_its_own_minute(other: tuple[str, RejectReason]) -> None:
    log = RejectionLog()
    log.note(_refused("p", RejectReason.INVALID_JSON, 1), 100.0)
    assert len(log.note(_refused(*other, 1), 101.0)) == 1


def test_the_lines_go_to_the_log_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="collectors.records")
    RejectionLog().note(_refused("p", RejectReason.INVALID_JSON, 50), 100.0)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "invalid_json" in infos[0].getMessage()


def test_the_daemon_logs_a_poll_of_bad_records_in_one_line(caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    from collectors.daemon import Daemon
    from monitor.config import parse_config, resolve
    from visionmon.app import build_statistics

    loaded = resolve(parse_config({
        "version": 1, "models": [{"name": "m", "classes": ["a", "b"]}],
        "kafka": {"topics": {"predictions": "p", "images": "i", "feedback": "f"}}}))
    daemon = Daemon(loaded, build_statistics(loaded).engine, clock=lambda: 100.0)
    caplog.set_level(logging.INFO, logger="collectors.records")
    daemon._process([Record("p", 0, i, b"not json", (), 0) for i in range(30)])
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and infos[0].startswith("p: record refused (invalid_json: "), infos
    assert daemon.engine.rejected[("p", "invalid_json")] == 30
