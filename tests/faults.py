"""Fault injection for tests (no tests here): a TCP relay in front of the embedded broker that
can cut every connection and refuse new ones for a while, which is what Kafka clients see while
a broker restarts. Tansu keeps records in memory only, so its process cannot be restarted
without losing them; the relay gives the same outage with the data kept."""
import socket
import threading
import time


class BrokerRelay:
    def __init__(self, listen_port: int, broker_port: int):
        self.listen_port = listen_port
        self.broker_port = broker_port
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", listen_port))
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def outage(self, seconds: float) -> int:
        """Cut every relayed connection now and refuse new ones for `seconds`; returns how many
        connections were cut."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            cut = len(self._open)
            for s in self._open:
                _close(s)
            self._open.clear()
        return cut // 2

    def close(self) -> None:
        self._stopped.set()
        self.outage(0)
        _close(self._server)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.broker_port), timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= {src, dst}
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
