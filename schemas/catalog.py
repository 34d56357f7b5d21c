"""The record types on Flywheel's topics and where their schemas live.

Subjects follow Confluent's RecordNameStrategy (`flywheel.Prediction`): one subject per
record type, because topics are per model and share record types.
"""
import json
from functools import cache
from importlib import resources

NAMESPACE = "flywheel"
RECORD_NAMES = (
    "InferenceRequest", "Prediction", "GroundTruth", "FeedbackRecord",
    "ReviewItem", "DeadLetter", "RetrainRequested", "ModelEvent",
)


def subject_for(record_name: str) -> str:
    return f"{NAMESPACE}.{record_name}"


@cache
def load_schema(record_name: str) -> str:
    """The canonical JSON text of a record's current schema (as shipped in schemas/avro)."""
    if record_name not in RECORD_NAMES:
        raise KeyError(f"no schema named {record_name!r}; known: {', '.join(RECORD_NAMES)}")
    text = resources.files("flywheel.schemas").joinpath("avro", f"{record_name}.avsc").read_text()
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
