"""One timeline of what happened to a model, merged from every source that remembers it:

- the store's monitor windows: drift flagged (the first window of each flagged run per version),
  at the time the monitor closed that window and raised the flag (its end for windows stored
  before the monitor recorded that);
- the store's retrain bookkeeping: retrain requested (with reasons), candidate accepted, finished
  without a new version, or failed;
- the registry's ModelEvents (its durable event log, a copy of the `models` topic): registered,
  canary, shadow, promoted, rolled back, rejected, retired, awaiting approval, with reason and
  evidence; approved and declined (a person's decision on a waiting canary) name who decided;
- the workers' refusals (data_dir/models/refusals.jsonl): forged, unsigned or tampered events and
  versions that would not load. One naming no valid model shows on every model's timeline.
"""
from dataclasses import dataclass, field

from flywheel.feature_store import RetrainRecord, WindowMetrics
from flywheel.processors.models.refusals import REFUSED, Refusal
from flywheel.processors.models.store import NAME

DRIFT_FLAGGED = "DRIFT_FLAGGED"
RETRAIN_REQUESTED = "RETRAIN_REQUESTED"
RETRAIN_ACCEPTED = "RETRAIN_ACCEPTED"
RETRAIN_DONE = "RETRAIN_DONE"
RETRAIN_FAILED = "RETRAIN_FAILED"
DECIDED_BY_A_PERSON = ("APPROVED", "DECLINED")


@dataclass(frozen=True)
class Event:
    at: int                                   # epoch ms
    model: str
    kind: str                                 # one of the above, or a ModelEvent kind
    version: str | None = None
    detail: str = ""
    evidence: dict[str, float] = field(default_factory=dict)


def drift_events(model: str, windows: dict[str, list[WindowMetrics]]) -> list[Event]:
    out = []
    for version, rows in windows.items():
        flagged_before = False
        for w in rows:
            flagged = bool(w.values.get("drift_flagged"))
            if flagged and not flagged_before:
                features = ", ".join(w.detail.get("flagged_features") or []) if isinstance(w.detail, dict) else ""
                at = w.detail.get("closed_at", w.window_end) if isinstance(w.detail, dict) else w.window_end
                out.append(Event(at, model, DRIFT_FLAGGED, version, features))
            flagged_before = flagged
    return out


def retrain_events(retrains: list[RetrainRecord]) -> list[Event]:
    out = []
    for r in retrains:
        out.append(Event(r.requested_at, r.model, RETRAIN_REQUESTED, r.base_version,
                         ", ".join(r.reasons) + (f" ({r.retrain_id})" if r.retrain_id else "")))
        if r.new_version:               # on canary (still in flight until decided), or decided
            out.append(Event(r.updated_at, r.model, RETRAIN_ACCEPTED, r.new_version, f"new version {r.new_version}"))
        elif r.status == "done":        # finished without a new version: its candidate was rejected
            out.append(Event(r.updated_at, r.model, RETRAIN_DONE, r.base_version, r.detail))
        elif r.status == "failed":
            out.append(Event(r.updated_at, r.model, RETRAIN_FAILED, r.base_version, r.detail))
    return out


def model_events(model: str, records: list[dict], start: int = 0, end: int | None = None) -> list[Event]:
    """ModelEvent records (as on the `models` topic) of one model in [start, end)."""
    return [Event(r["at"], r["model"], r["kind"], r["version"], _detail(r), dict(r.get("evidence") or {}))
            for r in records if r["model"] == model and start <= r["at"] and (end is None or r["at"] < end)]


def _detail(record: dict) -> str:
    """The event's reason; for a person's decision, who took it first."""
    reason = record.get("reason") or ""
    if record["kind"] not in DECIDED_BY_A_PERSON:
        return reason
    who = f"by {record.get('actor') or '?'}"
    return f"{who}: {reason}" if reason else who


def refusal_events(model: str, refusals: list[Refusal], start: int = 0, end: int | None = None) -> list[Event]:
    return [Event(r.at, r.model, REFUSED, r.version, f"{r.reason}: {r.detail}" + (f" [{r.by}]" if r.by else ""))
            for r in refusals if (r.model == model or not NAME.match(r.model))
            and start <= r.at and (end is None or r.at < end)]


def merge(*sources: list[Event]) -> list[Event]:
    """One list in time order; the same event from two sources is kept once."""
    unique = {(e.at, e.model, e.kind, e.version, e.detail): e for source in sources for e in source}
    return sorted(unique.values(), key=lambda e: (e.at, e.kind, e.version or ""))
