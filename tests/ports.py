"""Free ports for a test's own `flywheel up`: never the defaults (19092, 18081, 9400...), which a
developer's running stack may hold, and never overlapping each other."""
import socket
from dataclasses import dataclass

from flywheel.streams.broker import free_port


def free_port_block(count: int) -> int:
    """A first port such that it and the next `count` ports are free (the stack numbers upward)."""
    for _ in range(50):
        base = free_port()
        try:
            sockets = [socket.create_server(("127.0.0.1", base + i)) for i in range(count + 1)]
        except OSError:
            continue
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
    """A metrics block and, outside it, a broker and a registry port. The two are held open together
    while chosen: a port free_port() returns is free again at once, so it could be handed out twice."""
    metrics = free_port_block(metrics_count)
    held: list[socket.socket] = []
    try:
        while len(held) < 2:
            s = socket.create_server(("127.0.0.1", 0))
            if metrics <= s.getsockname()[1] <= metrics + metrics_count:
                s.close()
            else:
                held.append(s)
        broker, registry = (s.getsockname()[1] for s in held)
    finally:
        for s in held:
            s.close()
    return StackPorts(broker, registry, metrics)
