"""Free ports for a test's own `flywheel up`: never the defaults (19092, 18081, 9400...), which a
developer's running stack may hold, and never overlapping each other.

Chosen below the ephemeral range (32768 and up on Linux), in a slice of its own per pytest-xdist
worker: a port the kernel hands out as free may be taken by an outgoing connection in the
seconds before `flywheel up` binds it, and was (a test's stack refused to start, its port busy)."""
import os
import random
import socket
from dataclasses import dataclass

LOW, HIGH = 20000, 32000           # above the defaults, below the ephemeral range


def _candidate(count: int) -> int:
    """A random first port in this worker's slice of [LOW, HIGH)."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    width = (HIGH - LOW) // workers
    start = LOW + (worker % workers) * width
    return random.randrange(start, start + width - count - 1)


def free_port_block(count: int) -> int:
    """A first port such that it and the next `count` ports are free (the stack numbers upward)."""
    for _ in range(200):
        base = _candidate(count)
        sockets = []
        try:
            for i in range(count + 1):
                sockets.append(socket.create_server(("127.0.0.1", base + i)))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError("no block of free ports")


@dataclass(frozen=True)
class StackPorts:
    broker: int
    registry: int
    metrics: int

    def up_args(self) -> list[str]:
        return ["--broker-port", str(self.broker), "--registry-port", str(self.registry),
                "--metrics-port", str(self.metrics)]


def stack_ports(metrics_count: int = 12) -> StackPorts:
    """A metrics block and, after it, a broker and a registry port: one free block, so no port is
    handed out twice."""
    base = free_port_block(metrics_count + 2)
    return StackPorts(base + metrics_count + 1, base + metrics_count + 2, base)
