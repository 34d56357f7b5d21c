"""The durable copy of every ModelEvent: <data_dir>/models/<model>/events.jsonl.

The `models` topic is the source of truth while the stack runs, but the embedded broker keeps
it in memory only. This log lets a restarted stack put each model's last state back on the
topic, and lets reports draw the event timeline after the stack has stopped. Each event is one
short line appended with O_APPEND, so several processes can write without interleaving.
"""
import json
from pathlib import Path


class EventLog:
    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "models"

    def append(self, event: dict) -> None:
        path = self.root / event["model"] / "events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(event, separators=(",", ":")) + "\n")

    def events(self, model: str | None = None) -> list[dict]:
        """Every logged event (of one model, or all), in time order."""
        paths = [self.root / model / "events.jsonl"] if model else sorted(self.root.glob("*/events.jsonl"))
        out = [json.loads(line) for p in paths if p.is_file() for line in p.read_text().splitlines() if line]
        return sorted(out, key=lambda e: e["at"])

    def last_state_version(self, model: str) -> int:
        """The highest state number the model's log holds (0: none, or logged before numbering)."""
        return max((int(e.get("state_version") or 0) for e in self.events(model)), default=0)

    def last(self) -> dict[str, dict]:
        """The last event of every model: its whole deployment state."""
        return {e["model"]: e for e in self.events()}
