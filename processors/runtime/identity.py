"""A process's default instance id: unique per process, so two processes on one host never
share a transactional id (they would fence each other). A supervisor that restarts a process in
the same slot gives it a stable id instead (FLYWHEEL_INSTANCE_ID), so the new one fences the old."""
import os
import socket


def process_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
