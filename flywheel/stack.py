"""The embedded stack's supervisor: broker, schemas, topics and model deployments, then every
processor as a child process, each with its own Prometheus port. Stops them in reverse on
Ctrl-C or SIGTERM.

Which processors run is not listed here: every command module that defines
`stack_processes(config) -> list[ProcessSpec]` contributes its own.
"""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

from processors.models import EventLog, ModelRegistry
from streams.broker import EmbeddedBroker

from flywheel import commands
from flywheel.config import Config
from flywheel.wiring import ensure_core_topics, register_all_schemas, schema_registry


@dataclass
class ProcessSpec:
    name: str
    args: list[str]                   # flywheel arguments, e.g. ["worker", "--model", "m"]
    metrics_port: int = 0             # assigned by the stack
    pid: int = 0


def replicas(name: str, args: list[str], count: int, instance_id: str) -> list[ProcessSpec]:
    """`count` processes of one command as one consumer group: each with its own instance id
    (`<instance_id>-<i>`, so its own transactional id); one keeps the plain name and arguments."""
    if count <= 1:
        return [ProcessSpec(name, args)]
    return [ProcessSpec(f"{name}-{i}", [*args, "--instance-id", f"{instance_id}-{i}"]) for i in range(1, count + 1)]


@dataclass
class StackState:
    """What a running stack tells other commands (status, report) via data_dir/stack.json."""

    bootstrap: str
    data_dir: str
    started_at: float
    processes: list[ProcessSpec] = field(default_factory=list)
    restored_models: list[str] = field(default_factory=list)


class Stack:
    def __init__(self, config: Config, models: list[str] = (), extra: list[ProcessSpec] = (),
                 extra_env: dict[str, str] | None = None):
        self.config = config
        self.models = list(models)
        self.extra = list(extra)
        self.extra_env = dict(extra_env or {})
        self.broker: EmbeddedBroker | None = None
        self.restored: list[str] = []
        self._children: list[tuple[ProcessSpec, subprocess.Popen]] = []

    @property
    def state_path(self):
        return self.config.data_dir / "stack.json"

    def start(self) -> StackState:
        self.start_backbone()
        return self.start_processes()

    def start_backbone(self) -> None:
        """Broker, schemas, topics, and the model deployments a memory-only broker forgot."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.config.kafka.bootstrap:
            self.broker = EmbeddedBroker(self.config.kafka.embedded_port,
                                         self.config.data_dir / "broker.log").start()
        schemas = schema_registry(self.config)
        register_all_schemas(schemas)
        known = sorted(set(self.models) | set(EventLog(self.config.data_dir).last()))
        ensure_core_topics(self.config, known)
        models = ModelRegistry(self.config.kafka, schemas, self.config.data_dir, actor="stack")
        try:
            self.restored = models.restore()
        finally:
            models.close()

    def start_processes(self) -> StackState:
        specs = self._process_specs()
        for spec in specs:
            self._spawn(spec)
        state = StackState(self.config.kafka.bootstrap_servers, str(self.config.data_dir.resolve()),
                           time.time(), specs, self.restored)
        self.state_path.write_text(json.dumps(asdict(state), indent=2))
        return state

    def _process_specs(self) -> list[ProcessSpec]:
        specs = [spec for module in commands.discover() if hasattr(module, "stack_processes")
                 for spec in module.stack_processes(self.config)] + self.extra
        for i, spec in enumerate(specs, start=1):
            spec.metrics_port = self.config.metrics_port + i
        return specs

    def _spawn(self, spec: ProcessSpec) -> None:
        env = {**os.environ, **self.extra_env,
               "FLYWHEEL_BOOTSTRAP": self.config.kafka.bootstrap_servers,
               "FLYWHEEL_DATA_DIR": str(self.config.data_dir.resolve()),
               "FLYWHEEL_METRICS_PORT": str(spec.metrics_port)}
        log = open(self.config.data_dir / f"{spec.name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "flywheel", *spec.args], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        spec.pid = proc.pid
        self._children.append((spec, proc))

    def failed(self) -> list[tuple[ProcessSpec, int]]:
        """Children that exited on their own, with their exit codes."""
        return [(spec, proc.returncode) for spec, proc in self._children if proc.poll() is not None]

    def stop(self, timeout: float = 15.0) -> None:
        for _, proc in reversed(self._children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc in reversed(self._children):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._children.clear()
        if self.broker:
            self.broker.stop()
        self.state_path.unlink(missing_ok=True)
