"""Terminal output shared by commands: rich progress bars on stderr, JSON lines on stdout."""
import base64
import json
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

err = Console(stderr=True)


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="cyan")


def progress(description: str) -> Progress:
    """Count, rate, elapsed and ETA on stderr; hidden when stderr is not a terminal."""
    return Progress(TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=not err.is_terminal)


def _default(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def print_json_line(record, out=None) -> None:
    (out or sys.stdout).write(json.dumps(record, default=_default, separators=(",", ":")) + "\n")


MAX_LISTED = 20   # problems named one by one; the rest are counted


def refusal(command: str, problems: list[str], what: str) -> str:
    """The last line of a refusal that sent nothing: one problem is that line; more are each
    printed on a line of their own first (up to MAX_LISTED) and then counted."""
    if len(problems) == 1:
        return f"{problems[0]}; nothing sent"
    for problem in problems[:MAX_LISTED]:
        print(f"flywheel {command}: {problem}", file=sys.stderr)
    more = f" ({len(problems) - MAX_LISTED} more not listed)" if len(problems) > MAX_LISTED else ""
    return f"{len(problems)} bad {what}{more}; nothing sent"
