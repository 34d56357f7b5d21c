"""Monitor settings: TOML [monitor], env FLYWHEEL_MONITOR_<FIELD>."""
from dataclasses import dataclass

from flywheel.processors.runtime.identity import process_instance_id
from flywheel.schemas.setting import setting


@dataclass
class MonitorSettings:
    """TOML [monitor], env FLYWHEEL_MONITOR_<FIELD>: drift, data quality and live performance per window."""
    window_seconds: float = setting(3600.0, unit="s", min=1, doc="length of a monitor window (seconds in a demo, "
                                                                 "hours in production)")
    allowed_lateness_seconds: float = setting(30.0, unit="s", min=0, doc="windows close when the watermark (the "
                                              "newest event time read, less this) passes their end; a record for a "
                                              "window already stored is counted late")
    idle_seconds: float = setting(60.0, unit="s", min=0, doc="a partition with no record for this long holds the "
                                  "watermark back no more (all quiet: it follows the clock; 0: windows close by the "
                                  "clock alone)")
    max_open_windows: int = setting(100, unit="windows", min=1, doc="open windows per model version; past it the "
                                    "oldest close before the watermark passes them (a backlog read unevenly)")
    group_id: str = setting("flywheel-monitor", doc="Kafka consumer group")
    instance_id: str = setting(factory=process_instance_id, doc="names this process's partial windows; default: "
                                                                "unique per process")
    instances: int = setting(1, unit="processes", min=1, doc="processes `flywheel up` runs as one group (<id>-1..N)")
    progress_seconds: float = setting(2.0, unit="s", min=0.01, doc="how often a process rewrites its progress")
    merge_wait_seconds: float = setting(30.0, unit="s", min=0, doc="then a window is merged without the "
                                                                   "partitions it lacks")
    batch_size: int = setting(5000, unit="records", min=1, doc="records consumed per batch at most")
    poll_timeout_seconds: float = setting(0.5, unit="s", min=0, doc="how long a poll blocks when nothing is waiting")
    reference_refresh_seconds: float = setting(30.0, unit="s", min=0, doc="how soon a version's reference profile "
                                                                          "is read again (a missing or rebuilt one)")
    psi_threshold: float = setting(0.2, unit="PSI", min=0, doc="a feature's PSI above this is drift (0.2: the "
                                                               "usual \"significant shift\" line)")
    false_alarms_per_day: float = setting(0.1, unit="flags/day", min=0, doc="expected drift flags a day per model "
                                                                            "on undrifted traffic")
    min_count: int = setting(100, unit="rows", min=1, doc="rows a window is judged on (smaller ones are "
                                                          "carried over)")
    bins: int = setting(10, unit="bins", min=2, doc="histogram bins of a numeric feature's PSI")
    missing_rate: float = setting(0.05, unit="share", min=0, max=1, doc="allowed rise of a feature's missing "
                                                                        "rate over the reference's")
    out_of_range: float = setting(0.01, unit="share", min=0, max=1, doc="allowed share of values outside the "
                                                                        "reference's range")
    unseen_category: float = setting(0.01, unit="share", min=0, max=1, doc="allowed share of categories the "
                                                                           "reference never saw")
    volume_low: float = setting(0.2, unit="ratio", min=0, doc="a window with fewer records than this times the "
                                                              "reference's rate is flagged")
    volume_high: float = setting(5.0, unit="ratio", min=0, doc="a window with more records than this times the "
                                                               "reference's rate is flagged")

