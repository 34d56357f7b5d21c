"""The embedded stack's supervisor: broker, schemas, topics and model deployments, then every
processor as a child process, each with its own Prometheus port. A processor that exits is
started again after a backoff that doubles with each recent exit; only a crash loop (too many
exits of one processor within a window) stops the stack. Stops them in reverse on Ctrl-C or
SIGTERM.

One stack per data dir: `data_dir/stack.lock` is held (flock) for the stack's lifetime, so a
second `flywheel up` on the same data dir stops before it touches anything, and only the holder
writes or removes `stack.json`. Every port the stack will listen on is checked before anything
starts.

Which processors run is not listed here: every command module that defines
`stack_processes(config) -> list[ProcessSpec]` contributes its own.
"""
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from flywheel import commands
from flywheel.config import Config
from flywheel.errors import UserError
from flywheel.processors.models import EventLog, ModelRegistry
from flywheel.processors.runtime import start_metrics_server
from flywheel.schemas.registry.rest import RegistryServer
from flywheel.settings import SupervisorSettings
from flywheel.streams.broker import EmbeddedBroker, port_is_free
from flywheel.streams.clients import make_admin
from flywheel.streams.orphans import die_with_parent
from flywheel.streams.rotation import Rotator
from flywheel.streams.settings import RotationSettings
from flywheel.streams.topics import TopicCatalog
from flywheel.wiring import ensure_core_topics, feature_store_for, register_all_schemas, schema_registry


class StackError(UserError):
    """The stack cannot start (data dir taken, ports busy) or gave up (a crash loop, named with the
    processor's last log line, which says why): one line for the user, not a traceback of the
    supervisor."""


@dataclass
class ProcessSpec:
    name: str
    args: list[str]                   # flywheel arguments, e.g. ["worker", "--model", "m"]
    metrics_port: int = 0             # assigned by the stack
    pid: int = 0
    restarts: int = 0                 # times the supervisor started it again
    port: int = 0                     # what it serves besides /metrics (the console), checked before start


def slot_instance_id(name: str) -> str:
    """The instance id of a process slot: stable across restarts, so a restarted process fences its
    predecessor's transactions; different for every slot, so none fences another."""
    return f"{socket.gethostname()}-{name}"


def replicas(name: str, args: list[str], count: int) -> list[ProcessSpec]:
    """`count` processes of one command as one consumer group, named `<name>-<i>`: each gets its
    own stable instance id (and so transactional id) from its slot's name (see `_spawn`); one
    keeps the plain name."""
    if count <= 1:
        return [ProcessSpec(name, args)]
    return [ProcessSpec(f"{name}-{i}", list(args)) for i in range(1, count + 1)]


@dataclass
class StackState:
    """What a running stack tells other commands (status, report) via data_dir/stack.json."""

    bootstrap: str
    data_dir: str
    started_at: float
    processes: list[ProcessSpec] = field(default_factory=list)
    restored_models: list[str] = field(default_factory=list)
    metrics_port: int = 0             # the supervisor's own /metrics (flywheel_process_restarts_total)
    pid: int = 0                      # the supervisor's


@dataclass
class _Child:
    spec: ProcessSpec
    proc: subprocess.Popen | None = None
    exits: list[float] = field(default_factory=list)     # monotonic times of recent exits
    restart_at: float | None = None


class Stack:
    def __init__(self, config: Config, models: list[str] = (), extra: list[ProcessSpec] = (),
                 extra_env: dict[str, str] | None = None, clock=time.monotonic):
        self.config = config
        self.models = list(models)
        self.extra = list(extra)
        self.extra_env = dict(extra_env or {})
        self.settings = config.section(SupervisorSettings, "supervisor")
        self.clock = clock
        self.broker: EmbeddedBroker | None = None
        self.rotator: Rotator | None = None     # bounds what the embedded broker holds
        self.restored: list[str] = []
        self.state: StackState | None = None
        self._specs: list[ProcessSpec] = []
        self._children: list[_Child] = []
        self._lock = None
        self._metrics = CollectorRegistry()
        self._restarts = Counter("flywheel_process_restarts",
                                 "Processes the supervisor started again after they exited",
                                 ["process"], registry=self._metrics)
        self._server = None
        self.registry_server: RegistryServer | None = None   # the embedded registry's Confluent REST API

    @property
    def state_path(self) -> Path:
        return self.config.data_dir / "stack.json"

    def start(self) -> StackState:
        self.start_backbone()
        return self.start_processes()

    def start_backbone(self) -> None:
        """Lock, port checks, broker, schemas, topics, the store's schema (on Cassandra the
        processors would refuse an unmigrated keyspace), and the model deployments a memory-only
        broker forgot."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._specs = self._process_specs()
        self._check_ports()
        if self.config.metrics_port:
            self._server = start_metrics_server(self.config.metrics_port, self._metrics)
        schemas = schema_registry(self.config)
        if not self.config.kafka.schema_registry_url:   # so any Confluent client can read the topics
            self.registry_server = RegistryServer(schemas, self.config.kafka.embedded_registry_port,
                                                  self.config.kafka.embedded_registry_connections).start()
        if not self.config.kafka.bootstrap:
            self.broker = EmbeddedBroker(self.config.kafka.embedded_port,
                                         self.config.data_dir / "broker.log").start()
            self.rotator = Rotator(make_admin(self.config.kafka), TopicCatalog(self.config.kafka),
                                   self.config.section(RotationSettings, "rotation"))
        register_all_schemas(schemas)
        known = sorted(set(self.models) | set(EventLog(self.config.data_dir).last()))
        ensure_core_topics(self.config, known)
        with feature_store_for(self.config) as store:
            store.migrate()
        models = ModelRegistry(self.config.kafka, schemas, self.config.data_dir, actor="stack")
        try:
            self.restored = models.restore()
        finally:
            models.close()

    def start_processes(self) -> StackState:
        for spec in self._specs:
            self._children.append(_Child(spec))
            self._spawn(self._children[-1])
        self.state = StackState(self.config.kafka.bootstrap_servers, str(self.config.data_dir.resolve()),
                                time.time(), self._specs, self.restored, self.config.metrics_port, os.getpid())
        self._write_state()
        return self.state

    def _take_lock(self) -> None:
        path = self.config.data_dir / "stack.lock"
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise StackError(f"a stack is already running on data dir {self.config.data_dir} (pid {holder}): "
                             f"stop it first, or use another --data-dir") from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def _check_ports(self) -> None:
        wanted = [(spec.metrics_port, f"{spec.name} metrics") for spec in self._specs]
        wanted += [(spec.port, spec.name) for spec in self._specs if spec.port]
        if self.config.metrics_port:
            wanted.insert(0, (self.config.metrics_port, "supervisor metrics"))
        if not self.config.kafka.schema_registry_url:
            wanted.insert(0, (self.config.kafka.embedded_registry_port, "schema registry"))
        if not self.config.kafka.bootstrap:
            wanted.insert(0, (self.config.kafka.embedded_port, "broker"))
        # The metrics endpoints may be told to listen on every interface; broker and registry on loopback.
        busy = [f"port {port} is in use ({what})" for port, what in wanted
                if not port_is_free(port, "127.0.0.1" if what in ("broker", "schema registry") else "0.0.0.0")]
        if busy:
            raise StackError("; ".join(busy) + ": stop what holds it or choose other ports with "
                                               "--broker-port / --registry-port / --metrics-port "
                                               "([console] port for the console)")

    def _process_specs(self) -> list[ProcessSpec]:
        specs = [spec for module in commands.discover() if hasattr(module, "stack_processes")
                 for spec in module.stack_processes(self.config)] + self.extra
        for i, spec in enumerate(specs, start=1):
            spec.metrics_port = self.config.metrics_port + i
        return specs

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        env = {**os.environ, **self.extra_env,
               "FLYWHEEL_BOOTSTRAP": self.config.kafka.bootstrap_servers,
               "FLYWHEEL_DATA_DIR": str(self.config.data_dir.resolve()),
               "FLYWHEEL_METRICS_PORT": str(spec.metrics_port),
               # Stable per process slot: a restarted child fences its predecessor's transactions.
               "FLYWHEEL_INSTANCE_ID": slot_instance_id(spec.name)}
        if self.config.path:   # `flywheel -c FILE up`: every child reads the same file
            env["FLYWHEEL_CONFIG"] = str(self.config.path)
        if self.rotator:     # the processors read and write the generations it rotates
            env["FLYWHEEL_KAFKA_TOPIC_GENERATIONS"] = "true"
        with open(self._log_path(spec), "ab") as log:
            child.proc = subprocess.Popen([sys.executable, "-m", "flywheel", *spec.args], env=env,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=die_with_parent())
        child.restart_at = None
        spec.pid = child.proc.pid

    def _log_path(self, spec: ProcessSpec) -> Path:
        return self.config.data_dir / f"{spec.name}.log"

    def _write_state(self) -> None:
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self.state), indent=2))
        tmp.replace(self.state_path)         # readers never see half a file

    def supervise(self) -> list[str]:
        """Rotate the embedded broker's topics when due (streams/rotation.py), restart what exited
        and is due; return one line per exit or restart. Raises
        StackError naming the processor and its last log line on a crash loop."""
        now, s, notes = self.clock(), self.settings, []
        if self.rotator:
            self.rotator.tick()
        for child in self._children:
            spec = child.spec
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                child.proc = None
                child.exits = [t for t in child.exits if now - t < s.crash_loop_seconds] + [now]
                if len(child.exits) >= s.crash_loop_exits:
                    raise StackError(f"{spec.name} exited {len(child.exits)} times in {s.crash_loop_seconds:g}s "
                                     f"(last code {code}), stopping the stack; its last log line: "
                                     f"{self.last_log_line(spec) or '(empty log)'}")
                delay = min(s.max_backoff_seconds, s.backoff_seconds * 2 ** (len(child.exits) - 1))
                child.restart_at = now + delay
                notes.append(f"{spec.name} (pid {spec.pid}) exited with code {code}; restarting in {delay:g}s")
            elif child.proc is None and child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
                spec.restarts += 1
                self._restarts.labels(spec.name).inc()
                self._write_state()
                notes.append(f"{spec.name} restarted (pid {spec.pid}, restart {spec.restarts})")
        return notes

    def last_log_line(self, spec: ProcessSpec) -> str:
        """The last non-empty line of a processor's log: for a crash, its exception."""
        try:
            with open(self._log_path(spec), "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                lines = f.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return next((line.strip() for line in reversed(lines) if line.strip()), "")

    def stop(self, timeout: float = 15.0) -> None:
        running = [c.proc for c in reversed(self._children) if c.proc is not None]
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._children.clear()
        if self.broker:
            self.broker.stop()
        if self._server:
            self._server[0].shutdown()
        if self.registry_server:
            self.registry_server.stop()
        if self._lock:                       # only the stack holding the lock wrote stack.json
            self.state_path.unlink(missing_ok=True)
            self._lock.close()
            self._lock = None
