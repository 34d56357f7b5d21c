"""The running stack as `flywheel up` describes it in <data_dir>/stack.json."""
import json
from pathlib import Path

from flywheel.errors import NotFound
from flywheel.stack import ProcessSpec, StackState


class NoStackRunning(NotFound):
    """No stack runs on the data dir the user named (or it is still starting)."""


def read_stack(data_dir: Path) -> StackState | None:
    """The state of the stack running on this data dir, or None when none is."""
    path = Path(data_dir) / "stack.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise NoStackRunning(f"{path} is not readable JSON ({e}); is `flywheel up` still starting?") from None
    return StackState(raw["bootstrap"], raw["data_dir"], raw["started_at"],
                      [ProcessSpec(**p) for p in raw.get("processes", [])], raw.get("restored_models", []),
                      raw.get("metrics_port", 0), raw.get("pid", 0))


def require_stack(data_dir: Path) -> StackState:
    state = read_stack(data_dir)
    if state is None:
        raise NoStackRunning(f"no stack is running on data dir {data_dir} (no stack.json): "
                             f"start one with `flywheel up`, or pass the same --data-dir")
    return state
