"""Colours and words both views use for the same things, so the terminal and the report agree."""
from flywheel.views import timeline

EVENT_COLORS = {
    timeline.DRIFT_FLAGGED: "#e67e22",
    timeline.RETRAIN_REQUESTED: "#8e44ad",
    timeline.RETRAIN_ACCEPTED: "#16a085",
    timeline.RETRAIN_DONE: "#7f8c8d",
    timeline.RETRAIN_FAILED: "#c0392b",
    "REGISTERED": "#2980b9",
    "CANARY": "#d4ac0d",
    "SHADOW": "#95a5a6",
    "PROMOTED": "#27ae60",
    "ROLLED_BACK": "#e74c3c",
    "REJECTED": "#922b21",
    "RETIRED": "#7f8c8d",
    "REFUSED": "#ff0000",
    "AWAITING_APPROVAL": "#d35400",
    "APPROVED": "#1e8449",
    "DECLINED": "#b03a2e",
}
EVENT_WORDS = {
    timeline.DRIFT_FLAGGED: "drift flagged",
    timeline.RETRAIN_REQUESTED: "retrain requested",
    timeline.RETRAIN_ACCEPTED: "candidate accepted",
    timeline.RETRAIN_DONE: "retrain finished",
    timeline.RETRAIN_FAILED: "retrain failed",
    "REGISTERED": "registered",
    "CANARY": "canary",
    "SHADOW": "shadow",
    "PROMOTED": "promoted",
    "ROLLED_BACK": "rolled back",
    "REJECTED": "candidate rejected",
    "RETIRED": "retired",
    "REFUSED": "REFUSED",
    "AWAITING_APPROVAL": "awaiting approval",
    "APPROVED": "approved",
    "DECLINED": "canary rejected",
}
VERSION_COLORS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def event_color(kind: str) -> str:
    return EVENT_COLORS.get(kind, "#555555")


def event_words(kind: str) -> str:
    return EVENT_WORDS.get(kind, kind.lower().replace("_", " "))


def version_colors(versions: list[str]) -> dict[str, str]:
    return {v: VERSION_COLORS[i % len(VERSION_COLORS)] for i, v in enumerate(versions)}
