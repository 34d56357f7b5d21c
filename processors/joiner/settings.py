"""Joiner settings: TOML [joiner], env FLYWHEEL_JOINER_<FIELD>."""
from dataclasses import dataclass

from flywheel.processors.runtime.identity import process_instance_id
from flywheel.schemas.setting import setting


@dataclass(frozen=True)
class HoldBound:
    """How many labels, and how many bytes of them, the joiner may hold."""
    labels: int
    bytes: int


@dataclass
class JoinerSettings:
    """TOML [joiner], env FLYWHEEL_JOINER_<FIELD>: predictions meet their labels."""
    join_window_seconds: float = setting(7 * 86_400.0, unit="s", min=1,
                                         doc="how long after its prediction a label still joins")
    prediction_ttl_margin_seconds: float = setting(
        86_400.0, unit="s", min=0, doc="predictions are kept this much longer than the window, so a label a "
                                       "little past it is told apart as late rather than unknown")
    early_label_wait_seconds: float = setting(600.0, unit="s", min=0,
                                              doc="how long a label that came first waits for its prediction")
    held_after_join_seconds: float = setting(
        10.0, unit="s", min=0, doc="how long a label that came first stays held once it met a prediction, for "
                                   "the request's other versions (short: a hold keeps its partition's committed "
                                   "offset back and its label in memory)")
    max_held_labels: int = setting(
        100_000, unit="labels", min=1, doc="labels held for their predictions at most; past it the oldest are "
                                           "given up as `hold_bound` dead letters (a batch is at most this many "
                                           "records, so it alone never passes the bound)")
    max_held_bytes: int = setting(
        128 * 2**20, unit="bytes", min=2**20, doc="memory the held labels may keep (each its message plus about "
                                                  "1 KB); past it the oldest are given up as `hold_bound` dead "
                                                  "letters")
    group_id: str = setting("flywheel-joiner", doc="Kafka consumer group")
    instance_id: str = setting(factory=process_instance_id,
                               doc="names the transactional producer (with group_id): stable across restarts, "
                                   "unique per live joiner; default: unique per process (the pod name on Kubernetes)")
    instances: int = setting(1, unit="processes", min=1, doc="processes `flywheel up` runs as one group (<id>-1..N)")
    batch_size: int = setting(2000, unit="records", min=1, doc="records consumed per batch at most")
    poll_timeout_seconds: float = setting(0.2, unit="s", min=0, doc="how long a poll blocks when nothing is waiting")
    exactly_once: bool = setting(True, doc="Kafka transactions for feedback, dead letters and offsets")
    compiled: bool = setting(False, doc="read Predictions and labels and write FeedbackRecords on the compiled core, "
                                        "where it was built at install time (the log and `flywheel_record_path` say "
                                        "which path runs). Off by default: it gained 1.2-1.4 times the joiner's "
                                        "per-record CPU, under the 1.5 a compiled path must show (docs/benchmarks.md)")
    max_clock_skew_seconds: float = setting(
        300.0, unit="s", min=0, doc="a label's labelled_at may be at most this far ahead of the joiner's clock "
                                    "(and, live, at most the join window plus the margin plus this behind it); "
                                    "else it is a `time_skew` dead letter")

    @property
    def hold_bound(self) -> HoldBound:
        return HoldBound(self.max_held_labels, self.max_held_bytes)

    @property
    def window_ms(self) -> int:
        return int(self.join_window_seconds * 1000)

    @property
    def prediction_ttl_s(self) -> int:
        return int(self.join_window_seconds + self.prediction_ttl_margin_seconds)

    def time_problem(self, labelled_at: int, now_ms: int, replay: bool) -> str | None:
        """Why a label's time is refused (None: it is fine). Replays keep their historical times."""
        skew_ms = int(self.max_clock_skew_seconds * 1000)
        if labelled_at < 0:
            return f"labelled_at {labelled_at} is before 1970"
        if labelled_at > now_ms + skew_ms:
            return f"labelled_at {labelled_at} is {(labelled_at - now_ms) / 1000:.0f}s ahead of the joiner's clock " \
                   f"(max_clock_skew_seconds {self.max_clock_skew_seconds:g})"
        oldest = now_ms - self.prediction_ttl_s * 1000 - skew_ms
        if not replay and labelled_at < oldest:
            return f"labelled_at {labelled_at} is {(now_ms - labelled_at) / 1000:.0f}s old, older than any " \
                   f"prediction the joiner keeps ({self.prediction_ttl_s}s)"
        return None
