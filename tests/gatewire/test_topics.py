"""MQTT topic layout: builders, subscription filters and the parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewire.topics import (
    GATEWAY,
    ID_PATTERN,
    Channel,
    GateTopics,
    ParsedTopic,
    SiteTopics,
    TopicError,
    parse_topic,
    shared_subscription,
)

ids = st.from_regex(ID_PATTERN, fullmatch=True).filter(lambda s: s != GATEWAY)


def test_gate_topics_follow_the_documented_layout() -> None:
    topics = GateTopics("ams1", "in-03")
    assert topics.verify_request == "provgate/v1/ams1/in-03/verify/request"
    assert topics.verdict == "provgate/v1/ams1/in-03/verify/verdict"
    assert topics.event == "provgate/v1/ams1/in-03/event"
    assert topics.heartbeat == "provgate/v1/ams1/in-03/heartbeat"
    assert topics.status == "provgate/v1/ams1/in-03/status"
    assert topics.gateway_status == "provgate/v1/ams1/gateway/status"


def test_site_filters_match_every_gate_with_a_single_level_wildcard() -> None:
    site = SiteTopics("ams1")
    assert site.verify_requests == "provgate/v1/ams1/+/verify/request"
    assert site.events == "provgate/v1/ams1/+/event"
    assert site.heartbeats == "provgate/v1/ams1/+/heartbeat"
    assert site.statuses == "provgate/v1/ams1/+/status"
    assert site.gate("out-1") == GateTopics("ams1", "out-1")


def test_shared_subscription_spreads_requests_over_a_group() -> None:
    assert (
        SiteTopics("ams1").shared_verify_requests("workers")
        == "$share/workers/provgate/v1/ams1/+/verify/request"
    )


@pytest.mark.parametrize("group", ["", "a/b", "a+", "#", "x" * 65])
def test_shared_subscription_refuses_a_group_name_with_topic_syntax(group: str) -> None:
    with pytest.raises(ValueError, match="share group"):
        shared_subscription(group, "provgate/v1/ams1/+/event")


@pytest.mark.parametrize(
    ("site", "gate"),
    [
        ("AMS1", "g"),
        ("ams1", "G"),
        ("", "g"),
        ("ams1", ""),
        ("a/b", "g"),
        ("ams1", "+"),
        ("ams1", "#"),
        ("a" * 65, "g"),
        ("ams1", "gate 1"),
        ("ams1", "gäte"),
        ("ams1", GATEWAY),
    ],
)
def test_gate_topics_refuse_invalid_or_reserved_ids(site: str, gate: str) -> None:
    with pytest.raises(ValueError, match=r"id|reserved"):
        GateTopics(site, gate)


@pytest.mark.parametrize("channel", list(Channel))
def test_parse_topic_inverts_the_gate_topic_of_every_channel(channel: Channel) -> None:
    topic = GateTopics("ams1", "in-03").topic(channel)
    assert parse_topic(topic) == ParsedTopic("ams1", "in-03", channel)


def test_parse_topic_recognises_the_gateway_status_topic() -> None:
    parsed = parse_topic(SiteTopics("ams1").gateway_status)
    assert isinstance(parsed, ParsedTopic)
    assert parsed.is_gateway
    assert parsed.channel is Channel.STATUS


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "provgate/v2/ams1/in-03/event",
        "provgate/v1/ams1/in-03",
        "provgate/v1/ams1/+/event",
        "provgate/v1/ams1/#",
        "provgate/v1/AMS1/in-03/event",
        "provgate/v1/ams1//event",
        "provgate/v1/ams1/in-03/verify",
        "provgate/v1/ams1/in-03/verify/request/extra",
        "provgate/v1/ams1/in-03/unknown",
        "provgate/v1/ams1/gateway/verify/request",
        "$share/g/provgate/v1/ams1/in-03/event",
        "/provgate/v1/ams1/in-03/event",
        "provgate/v1/" + "a" * 65 + "/in-03/event",
    ],
)
def test_parse_topic_returns_an_error_for_a_topic_that_is_not_ours(topic: str) -> None:
    assert isinstance(parse_topic(topic), TopicError)


@given(st.text(max_size=200))
def test_parse_topic_never_raises(topic: str) -> None:
    assert isinstance(parse_topic(topic), ParsedTopic | TopicError)


@given(ids, ids, st.sampled_from(list(Channel)))
def test_parse_topic_round_trips_any_valid_ids(site: str, gate: str, channel: Channel) -> None:
    assert parse_topic(GateTopics(site, gate).topic(channel)) == ParsedTopic(site, gate, channel)
