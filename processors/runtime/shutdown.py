"""Graceful shutdown: SIGTERM and SIGINT set an Event the processor's loop checks between
batches, so the open batch is finished (or its transaction aborted) before the process leaves."""
import signal
import threading


def stop_on_signals(stop: threading.Event | None = None,
                    signals=(signal.SIGTERM, signal.SIGINT)) -> threading.Event:
    """Return an Event set by the first SIGTERM/SIGINT; a second one exits at once.
    Outside the main thread (where Python cannot install handlers) the Event is returned as is,
    and whoever started the processor stops it by setting it."""
    stop = stop or threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stop

    def handle(signum, _frame):
        if stop.is_set():
            raise SystemExit(128 + signum)
        stop.set()

    for sig in signals:
        signal.signal(sig, handle)
    return stop
