"""The demo's scripted incidents and the signals meant to catch each one."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Incident:
    """One injected failure, active over [start, end) as fractions of the run."""

    key: str
    title: str
    start: float
    end: float
    signals: tuple[str, ...]          # the signals designed to catch it
    quiet: tuple[str, ...] = ()       # signals that must NOT react (the point of the story)


INCIDENTS: tuple[Incident, ...] = (
    Incident("colour_shift", "camera firmware colour shift (input drift, accuracy drop)",
             0.22, 0.38, ("input_drift", "embedding_drift", "accuracy_drop")),
    Incident("bad_canary", "bad model version v2 on a canary (collapses onto a high-risk class)",
             0.42, 0.58, ("shadow_disagreement_canary", "shadow_agreement_test_canary")),
    Incident("latency_spike", "latency spike (burn-rate page)",
             0.62, 0.74, ("latency_burn", "alert:VisionmonErrorBudgetBurn/latency/page")),
    Incident("label_noise", "labeling vendor sends wrong labels (label noise)",
             0.78, 0.92, ("accuracy_drop",),
             quiet=("shadow_disagreement", "estimated_accuracy_drop")),
)


@dataclass(slots=True)
class Detection:
    """When a signal first fired after an incident's onset (wall seconds, events)."""

    signal: str
    after_seconds: float
    after_events: int


@dataclass(slots=True)
class IncidentRecord:
    incident: Incident
    started_at: float | None = None
    events_at_start: int = 0
    detections: dict[str, Detection] = field(default_factory=dict)
    quiet_violations: dict[str, Detection] = field(default_factory=dict)

    @property
    def caught(self) -> bool:
        return bool(self.detections)


def active(incidents: tuple[Incident, ...], progress: float) -> set[str]:
    """Keys of the incidents active at `progress` (0..1 of the run)."""
    return {i.key for i in incidents if i.start <= progress < i.end}
