"""Headers replay writes on every record it produces.

`flywheel-replay: <run id>` marks a replayed record: workers copy request headers onto their
predictions, and the joiner and monitor leave such records out of live figures.
`flywheel-redrive: <run id>` marks a dead letter sent back to its original topic: it was never
served, so it is live traffic, merely late, and counts as such.
`flywheel-origin: <topic>/<partition>/<offset>` names the source record; a resumed run uses it
to recognise what its interrupted attempt already delivered.
"""
REPLAY = "flywheel-replay"
REDRIVE = "flywheel-redrive"
ORIGIN = "flywheel-origin"

Headers = list[tuple[str, bytes]]


def origin(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


def get(headers: Headers | None, name: str) -> bytes | None:
    return next((v for k, v in headers or () if k == name), None)


def mark(headers: Headers | None, marker: str, run_id: str, source: str) -> Headers:
    """The original headers plus this run's marks (replacing an earlier run's mark of the same
    kind; a replay mark on a dead letter's original headers stays, so replayed traffic that died
    stays replayed traffic when re-driven)."""
    kept = [(k, v) for k, v in headers or () if k not in (marker, ORIGIN)]
    return kept + [(marker, run_id.encode()), (ORIGIN, source.encode())]
