"""The lab's IMDS serves instance events (scheduled maintenance, spot notices, rebalance
recommendations) as set per node through Lab.set_instance_events, with AWS's formats."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from lab import Lab
from lab.imds import aws_event_time, scheduled_event
from test_lab import get, imds, token

SCHEDULED = "meta-data/events/maintenance/scheduled"
SPOT = "meta-data/spot/instance-action"
REBALANCE = "meta-data/events/recommendations/rebalance"


def read(lab: Lab, node: str) -> list[tuple[int | None, str | None]]:
    answers = imds(lab, node, [token(), get(SCHEDULED), get(SPOT), get(REBALANCE)])[1:]
    return [(a["status"], a["text"]) for a in answers]


def test_aws_event_time_is_english_and_utc() -> None:
    moment = datetime(2019, 1, 21, 9, 0, 43, tzinfo=timezone.utc)
    assert aws_event_time(moment) == "21 Jan 2019 09:00:43 GMT"


def test_nothing_set_is_an_empty_list_and_two_404s(lab: Lab) -> None:
    (s_status, s_text), spot, rebalance = read(lab, "a")
    assert s_status == 200 and json.loads(s_text or "") == []
    assert spot[0] == 404 and rebalance[0] == 404


def test_events_per_node_and_reset_by_none(lab: Lab) -> None:
    event = scheduled_event("system-reboot", datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    spot = {"action": "terminate", "time": "2030-01-02T03:06:05Z"}
    rebalance = {"noticeTime": "2030-01-02T03:00:00Z"}
    lab.set_instance_events("a", scheduled=[event], spot=spot, rebalance=rebalance)
    (s_status, s_text), (p_status, p_text), (r_status, r_text) = read(lab, "a")
    assert (s_status, p_status, r_status) == (200, 200, 200)
    assert json.loads(s_text or "") == [event]
    assert event["NotBefore"] == "02 Jan 2030 03:04:05 GMT"
    assert json.loads(p_text or "") == spot
    assert json.loads(r_text or "") == rebalance
    assert lab.instance_events("a") == {"scheduled": [event], "spot": spot, "rebalance": rebalance}
    # the other node has none
    assert [s for s, _ in read(lab, "b")] == [200, 404, 404]
    lab.set_instance_events("a")
    assert [s for s, _ in read(lab, "a")] == [200, 404, 404]


def test_imds_faults_apply_to_event_paths(lab: Lab) -> None:
    lab.set_instance_events("a", spot={"action": "stop", "time": "2030-01-02T03:06:05Z"})
    lab.set_imds_fault("a", "disabled")
    assert [s for s, _ in read(lab, "a")] == [403, 403, 403]
    lab.set_imds_fault("a", "garbage")
    assert all(text is None for _, text in read(lab, "a"))
    lab.set_imds_fault("a", None)
    assert [s for s, _ in read(lab, "a")] == [200, 200, 404]


def test_reset_clears_events(lab: Lab) -> None:
    lab.set_instance_events("b", rebalance={"noticeTime": "2030-01-02T03:00:00Z"})
    lab.reset()
    assert [s for s, _ in read(lab, "b")] == [200, 404, 404]
