"""`--since WHEN` of the commands that look back (report, status), and how they print a time."""
import re
import time
from datetime import UTC, datetime

from flywheel.errors import BadInput

UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
HELP = "30m, 6h, 7d ago, an ISO time (UTC unless it says otherwise) or epoch ms"


class BadTime(BadInput, ValueError):
    """A time the user gave is neither a duration nor a timestamp Flywheel reads."""


def parse_since(text: str, now_ms: int) -> int:
    text = text.strip()
    relative = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text)
    if relative:
        return now_ms - int(float(relative.group(1)) * UNITS_MS[relative.group(2)])
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(f"--since {text!r} is not a duration (30m, 6h, 7d), an ISO time or epoch ms") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def utc_text(ms: int) -> str:
    """A time in ms since the epoch as a person reads it, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
