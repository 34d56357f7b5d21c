"""Refused ModelEvents and model versions, kept where `flywheel status` and reports read them:
<data_dir>/models/refusals.jsonl (one short JSON line each, appended with O_APPEND).

A refusal is a security event: a forged, unsigned or tampered ModelEvent, a name that could
leave the artifact store, a version the store never registered, an artifact changed after
registration, a file ONNX Runtime will not load. The names in it come from the refused event
and are untrusted: they are stored as data (cut to 100 characters), never used as paths."""
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flywheel.processors.models.errors import (
    ForgedEvent,
    InvalidName,
    ModelRegistryError,
    TamperedModel,
    UnloadableModel,
    UnregisteredVersion,
)

REFUSED = "REFUSED"

# Metric label values: a fixed set, never anything an event carries.
REASONS = ("unsigned", "bad_signature", "bad_name", "unregistered", "sha256_mismatch", "tampered", "unloadable",
           "bad_manifest")


def reason_of(error: ModelRegistryError) -> str:
    for kind, reason in ((InvalidName, "bad_name"), (UnregisteredVersion, "unregistered"),
                         (ForgedEvent, "sha256_mismatch"), (TamperedModel, "tampered"),
                         (UnloadableModel, "unloadable")):
        if isinstance(error, kind):
            return reason
    return "bad_manifest"


def _cut(text) -> str:
    return str(text)[:100]


@dataclass(frozen=True)
class Refusal:
    model: str
    version: str
    reason: str                       # one of REASONS
    detail: str
    event_at: int = 0                 # the refused event's `at` (0: unknown)
    at: int = field(default_factory=lambda: int(time.time() * 1000))
    by: str = ""                      # the processor that refused it

    def __post_init__(self):
        assert self.reason in REASONS, self.reason
        object.__setattr__(self, "model", _cut(self.model))
        object.__setattr__(self, "version", _cut(self.version))

    def describe(self) -> str:
        return f"REFUSED {self.model}/{self.version} ({self.reason}): {self.detail}"


class RefusalLog:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "models" / "refusals.jsonl"

    def append(self, refusal: Refusal) -> bool:
        """Record a refusal once: a worker re-reading the `models` topic after a restart, or a
        second worker, refuses the same event again. True if it was new."""
        same = (refusal.model, refusal.version, refusal.reason, refusal.event_at)
        if any((r.model, r.version, r.reason, r.event_at) == same for r in self.records()):
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(asdict(refusal), separators=(",", ":")) + "\n")
        return True

    def records(self) -> list[Refusal]:
        if not self.path.is_file():
            return []
        return [Refusal(**json.loads(line)) for line in self.path.read_text().splitlines() if line]
