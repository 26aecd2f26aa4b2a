"""The Prometheus metrics of one server, in its own registry (no process-wide state)."""

from __future__ import annotations

import platform
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from reconciler.resource_status import ResourceStatus
from reconciler.state import LockHolder, Suspension, suspension_of

CONTENT_TYPE = CONTENT_TYPE_LATEST
ATTENTION = 500
"""Per-resource series at most: enough to name what needs a look, bounded for Prometheus."""


def merged(named: Mapping[str, Metrics]) -> bytes:
    """Several sources' metrics as one exposition, each sample labelled with its source
    (one family per metric name, as Prometheus requires)."""
    families: dict[str, Metric] = {}
    for source, metrics in sorted(named.items()):
        for family in metrics.registry.collect():
            if family.name == "reconciler_build":
                if family.name not in families:
                    families[family.name] = family  # the same process: once
                continue
            into = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            for sample in family.samples:
                labels = {**sample.labels, "source": source}
                into.samples.append(sample._replace(labels=labels))
    registry = CollectorRegistry()
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _version() -> str:
    try:
        return version("reconciler")
    except PackageNotFoundError:
        return "unknown"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "reconciler_runs", "Runs ended, by result.", ["result", "trigger"], registry=r
        )
        self.target_runs = Counter(
            "reconciler_target_runs",
            "Runs ended, per target they covered, by result.",
            ["target", "result"],
            registry=r,
        )
        self.duration = Histogram(
            "reconciler_run_duration_seconds",
            "Wall time of a run: fetch, load, observe, plan and apply.",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.actions = Counter(
            "reconciler_actions",
            "Actions executed by apply runs, per target, by type and result.",
            ["target", "action", "result"],
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
            "Resources that differ from the manifests after the last run, per target; NaN"
            " when the last run could not tell (failed or invalid: see"
            " reconciler_drift_known).",
            ["target"],
            registry=r,
        )
        self.drift_known = Gauge(
            "reconciler_drift_known",
            "1 when the last run observed the target and planned, 0 when it could not.",
            ["target"],
            registry=r,
        )
        self.resources = Gauge(
            "reconciler_resources",
            "Managed resources per target, by sync and health, as last observed.",
            ["target", "sync", "health"],
            registry=r,
        )
        self.resource_info = Gauge(
            "reconciler_resource_info",
            "1 per managed resource that is out of sync, missing or not healthy, with its"
            f" state (as argocd_app_info); at most {ATTENTION} series, the rest counted in"
            " reconciler_resources.",
            ["target", "kind", "name", "sync", "health"],
            registry=r,
        )
        self.suspended = Gauge(
            "reconciler_suspended",
            "1 while automation is suspended on the target.",
            ["target"],
            registry=r,
        )
        self.lock_age = Gauge(
            "reconciler_lock_held_seconds",
            "How long the target's apply lock has been held (0 when free).",
            ["target"],
            registry=r,
        )
        self.build = Info(
            "reconciler_build", "The reconciler serving: version and Python.", registry=r
        )
        self.build.info({"version": _version(), "python": platform.python_version()})
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

    def observed(self, statuses: Iterable[ResourceStatus], targets: Iterable[str]) -> None:
        """Sync and health as a run saw them: counts per state, and one info series per
        resource that needs attention (bounded)."""
        self.resources.clear()
        self.resource_info.clear()
        counted: Tally[tuple[str, str, str]] = Tally()
        shown = 0
        for status in statuses:
            if not status.managed:
                continue
            rid = status.id
            counted[(rid.target, status.sync, status.health.state)] += 1
            if (status.sync != "synced" or status.health.state != "healthy") and shown < ATTENTION:
                self.resource_info.labels(
                    rid.target, rid.kind, rid.name, status.sync, status.health.state
                ).set(1)
                shown += 1
        for target in targets:
            if not any(key[0] == target for key in counted):
                self.resources.labels(target, "synced", "healthy").set(0)
        for (target, sync, health), count in counted.items():
            self.resources.labels(target, sync, health).set(count)

    def state(
        self,
        targets: Iterable[str],
        suspensions: Mapping[str, Suspension],
        locks: Mapping[str, LockHolder],
        now: float,
    ) -> None:
        """What the state store says now (read at each scrape)."""
        for target in targets:
            self.suspended.labels(target).set(1 if suspension_of(dict(suspensions), target) else 0)
            lock = locks.get(target)
            self.lock_age.labels(target).set(max(0.0, now - lock.since) if lock else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
