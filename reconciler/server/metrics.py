"""The Prometheus metrics of one server, in its own registry (no process-wide state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "reconciler_runs", "Runs ended, by result.", ["result", "trigger"], registry=r
        )
        self.duration = Histogram(
            "reconciler_run_duration_seconds",
            "Wall time of a run: fetch, load, observe, plan and apply.",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.actions = Counter(
            "reconciler_actions",
            "Actions executed by apply runs, by type and result.",
            ["action", "result"],
            registry=r,
        )
        self.planned = Counter(
            "reconciler_planned_actions",
            "Changes found by runs (planned, whether applied or not), by type.",
            ["action"],
            registry=r,
        )
        self.drifted = Gauge(
            "reconciler_drifted_resources",
            "Resources that differ from the manifests after the last run, per target.",
            ["target"],
            registry=r,
        )
        self.errors = Counter("reconciler_errors", "Errors, by kind.", ["kind"], registry=r)
        self.webhooks = Counter(
            "reconciler_webhooks",
            "Webhook requests, by endpoint and outcome.",
            ["hook", "outcome"],
            registry=r,
        )
        self.coalesced = Counter(
            "reconciler_coalesced_triggers",
            "Triggers folded into a run already pending.",
            registry=r,
        )
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "When a run last ended without error (Unix time).",
            registry=r,
        )

        self.notifications = Counter(
            "reconciler_notifications",
            "Notifications and commit statuses, by sink type and outcome (sent, failed).",
            ["sink", "outcome"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
