"""Prometheus metrics of one bridge service, on a registry of its own (never the global default registry).

Counters are incremented where things happen (an event made durable, a gap, a lifecycle event of the client,
a delivery outcome); gauges (channels, outbox depth, oldest pending age) are set from snapshots by the
service's refresh loop. Label values are bounded: topics are reduced to their *family* (ids replaced by
``{id}``) and at most :data:`MAX_FAMILIES` families are tracked before the rest count as ``other``.
"""

from __future__ import annotations

import re
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gcbridge.outbox.base import OutboxStats
from gcbridge.servicenow.conditions import KINDS as SINK_CONDITIONS

MAX_FAMILIES: Final = 200
_TOPIC_CACHE_LIMIT: Final = 10_000
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_HEXISH = re.compile(r"^[0-9a-f]{12,}$", re.I)
_HAS_DIGIT = re.compile(r"\d")


def _is_id_segment(segment: str) -> bool:
    if _UUID.match(segment) or _HEXISH.match(segment) or segment.isdigit():
        return True
    # Simulator and tenant ids such as "q-17" or "user42": short words with digits, but not "v2".
    return bool(_HAS_DIGIT.search(segment)) and not re.fullmatch(r"v\d+", segment)


def topic_family(topic: str) -> str:
    """``v2.routing.queues.3f2c...e1.conversations`` -> ``v2.routing.queues.{id}.conversations``."""
    return ".".join("{id}" if _is_id_segment(part) else part for part in topic.split("."))


# ServiceNow answers in tens to hundreds of milliseconds; a 60 s transaction quota bounds the top.
_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# Client lifecycle kind -> (counter attribute, labelled by reason).
_LIFECYCLE_COUNTERS: Final[dict[str, tuple[str, bool]]] = {
    "reconnecting": ("reconnects", True),
    "rotated": ("rotations", True),
    "token_refreshed": ("token_refreshes", False),
    "channel_created": ("channels_created", False),
    "subscription_rejected": ("subscription_rejections", False),
}


class BridgeMetrics:
    """All metrics of one service instance. ``render()`` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._families: set[str] = set()
        self._label_of_topic: dict[str, str] = {}
        self._received_by_label: dict[str, Counter] = {}  # family label -> its events_received child
        self.events_received = Counter(
            "gcbridge_events_received",
            "Events made durable in the outbox, by topic family.",
            ["family"],
            registry=r,
        )
        self.unrouted = Counter(
            "gcbridge_events_unrouted",
            "Events no mapping rule takes (not delivered; add a rule or drop the topic), by topic family.",
            ["family"],
            registry=r,
        )
        self.duplicates_dropped = Gauge(
            "gcbridge_duplicates_dropped",
            "Events the client dropped as copies of one already received (rotation overlap, second path).",
            registry=r,
        )
        self.loop_lag = Gauge(
            "gcbridge_event_loop_lag_seconds",
            "The event loop's worst lateness over the last minute: how long received frames may wait "
            "unread (a failed socket's gap starts that much earlier). A few ms is normal; seconds mean a "
            "starved host.",
            registry=r,
        )
        self.gaps = Counter(
            "gcbridge_gaps", "Periods in which events may have been missed.", ["reason"], registry=r
        )
        self.gap_seconds = Counter("gcbridge_gap_seconds", "Total length of reported gaps.", registry=r)
        self.reconnects = Counter(
            "gcbridge_reconnects", "Unplanned socket reconnects, by reason.", ["reason"], registry=r
        )
        self.rotations = Counter(
            "gcbridge_rotations", "Planned channel rotations, by reason.", ["reason"], registry=r
        )
        self.token_refreshes = Counter(
            "gcbridge_token_refreshes", "OAuth access tokens obtained.", registry=r
        )
        self.channels_created = Counter(
            "gcbridge_channels_created", "Notification channels created.", registry=r
        )
        self.subscription_rejections = Counter(
            "gcbridge_subscription_rejections", "Topics Genesys refused to subscribe.", registry=r
        )
        self.channels_in_use = Gauge(
            "gcbridge_channels_in_use", "Notification channels currently held.", registry=r
        )
        self.shards_live = Gauge(
            "gcbridge_shards_live", "Topic shards with a connected, subscribed socket.", registry=r
        )
        self.shards_total = Gauge("gcbridge_shards", "Topic shards configured.", registry=r)
        self.outbox_depth = Gauge("gcbridge_outbox_depth", "Outbox rows by state.", ["state"], registry=r)
        self.outbox_oldest_age = Gauge(
            "gcbridge_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered outbox row.",
            registry=r,
        )
        self.deliveries = Counter(
            "gcbridge_deliveries", "Delivery attempts to ServiceNow, by result.", ["result"], registry=r
        )
        self.servicenow_latency = Histogram(
            "gcbridge_servicenow_delivery_seconds",
            "Time to deliver one outbox row to ServiceNow: all requests it needs, and the waits for its "
            "key's earlier rows and for a request slot.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.servicenow_request = Histogram(
            "gcbridge_servicenow_request_seconds",
            "One HTTP request to ServiceNow, from sending it to the whole answer (no wait for a slot).",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.servicenow_up = Gauge(
            "gcbridge_servicenow_reachable", "1 when ServiceNow answered recently.", registry=r
        )
        self.servicenow_condition = Gauge(
            "gcbridge_servicenow_condition",
            "1 for the sink-wide condition that pauses deliveries now (credentials, access, missing_table, "
            "hibernating, unavailable, unreachable); all 0 when deliveries flow.",
            ["condition"],
            registry=r,
        )
        self.ready = Gauge(
            "gcbridge_ready", "1 when every shard is live and ServiceNow is reachable.", registry=r
        )
        for state in ("pending", "in_flight", "dead"):
            self.outbox_depth.labels(state=state)
        for result in ("delivered", "retry", "rejected"):
            self.deliveries.labels(result=result)
        for condition in SINK_CONDITIONS:
            self.servicenow_condition.labels(condition=condition)

    def add_ha(self) -> None:
        """The metrics of several instances (``[ha]``): only an instance with ``[ha]`` exports them."""
        r = self.registry
        self.ha_shards_owned = Gauge(
            "gcbridge_ha_shards_owned", "Shards whose lease this instance holds.", registry=r
        )
        self.ha_instances = Gauge(
            "gcbridge_ha_instances",
            "Live instances sharing the outbox (heartbeat within the TTL).",
            registry=r,
        )
        self.ha_failovers = Counter(
            "gcbridge_ha_failovers",
            "Shards this instance took over from an owner that stopped renewing or released them.",
            registry=r,
        )
        self.ha_lease_renew_failures = Counter(
            "gcbridge_ha_lease_renew_failures",
            "Lease rounds (renew and rebalance) that failed: the database slow or unreachable from here.",
            registry=r,
        )
        self.ha_standby_paths_live = Gauge(
            "gcbridge_ha_standby_paths_live",
            "Hot standby instances that published their coverage within the last few seconds.",
            registry=r,
        )

    def family_label(self, topic: str) -> str:
        # Per event on the ingest path: the regexes of topic_family once per topic, not once per event. A
        # topic's label never changes (families are only ever added), so the cache cannot go stale.
        label = self._label_of_topic.get(topic)
        if label is None:
            label = self._new_family_label(topic)
            if len(self._label_of_topic) >= _TOPIC_CACHE_LIMIT:
                self._label_of_topic.clear()  # per-conversation topics are unbounded: start over
            self._label_of_topic[topic] = label
        return label

    def _new_family_label(self, topic: str) -> str:
        family = topic_family(topic)
        if family in self._families:
            return family
        if len(self._families) >= MAX_FAMILIES:
            return "other"
        self._families.add(family)
        return family

    def record_received(self, topics: list[str]) -> None:
        counts: dict[str, int] = {}
        for topic in topics:
            label = self.family_label(topic)
            counts[label] = counts.get(label, 0) + 1
        for label, n in counts.items():
            counter = self._received_by_label.get(label)
            if counter is None:  # labels() takes a lock and builds a key on every call: once per label
                counter = self._received_by_label[label] = self.events_received.labels(family=label)
            counter.inc(n)

    def record_lifecycle(self, kind: str, reason: str) -> None:
        """Count one :class:`gcbridge.genesys.LifecycleEvent` (kinds without a counter are only logged)."""
        entry = _LIFECYCLE_COUNTERS.get(kind)
        if entry is None:
            return
        name, by_reason = entry
        counter: Counter = getattr(self, name)
        (counter.labels(reason=reason) if by_reason else counter).inc()

    def record_servicenow_request(self, method: str, seconds: float) -> None:
        """One HTTP request to ServiceNow took ``seconds`` (``ServiceNowRest``'s ``on_request``)."""
        self.servicenow_request.labels(method=method).observe(max(0.0, seconds))

    def set_outbox(self, stats: OutboxStats) -> None:
        self.outbox_depth.labels(state="pending").set(stats.pending)
        self.outbox_depth.labels(state="in_flight").set(stats.in_flight)
        self.outbox_depth.labels(state="dead").set(stats.dead)
        self.outbox_oldest_age.set(stats.oldest_pending_age)

    def render(self) -> bytes:
        return generate_latest(self.registry)
