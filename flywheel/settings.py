"""The application's own settings: the file's top-level keys and [supervisor] (how `flywheel up`
restarts its processes). Each package's settings live beside it (processors/<name>/settings.py,
streams/settings.py, feature_store/settings.py); flywheel/sections.py lists them all."""
from dataclasses import dataclass
from pathlib import Path

from flywheel.schemas.setting import setting


@dataclass
class TopSettings:
    """The top level of the file (no table), env FLYWHEEL_<FIELD>."""
    data_dir: Path = setting(Path(".flywheel"), doc="where the embedded stack keeps its state (--data-dir)")
    metrics_port: int = setting(9400, unit="TCP port", min=0, max=65535,
                                doc="where /metrics listens; `flywheel up` gives its processes the ports after it")
    metrics_addr: str = setting("127.0.0.1", doc="address /metrics listens on; 0.0.0.0 only where asked (Kubernetes)")
    instance_id: str = setting("", doc="this process's stable id when its supervisor gives one (the stack per "
                                       "process slot, the pod name on Kubernetes); empty: each process its own")


@dataclass
class SupervisorSettings:
    """TOML [supervisor], env FLYWHEEL_SUPERVISOR_<FIELD>: how `flywheel up` restarts its processes."""
    backoff_seconds: float = setting(1.0, unit="s", min=0, doc="delay before the first restart; doubles per "
                                                               "recent exit")
    max_backoff_seconds: float = setting(30.0, unit="s", min=0, doc="the restart delay at most")
    crash_loop_exits: int = setting(5, unit="exits", min=1, doc="this many exits of one processor within "
                                                                "crash_loop_seconds is a crash loop: the stack stops")
    crash_loop_seconds: float = setting(120.0, unit="s", min=0, doc="the window crash_loop_exits are counted in")
