"""A SIGKILLed parent takes its children along: the embedded broker and the stack's processors
(both started with flywheel.streams.orphans.die_with_parent) do not keep running, holding ports and CPU."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from flywheel.streams.broker import free_port, port_is_free

PARENT = textwrap.dedent("""
    import json, subprocess, sys, time
    from flywheel.streams.broker import EmbeddedBroker
    from flywheel.streams.orphans import die_with_parent
    broker = EmbeddedBroker(int(sys.argv[1])).start()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             start_new_session=True, preexec_fn=die_with_parent())
    print(json.dumps({"broker": broker._proc.pid, "child": child.pid}), flush=True)
    time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that died but was not reaped yet (its parent is gone: init reaps it soon) is a zombie.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are a Linux feature")
def test_children_die_with_a_killed_parent():
    port = free_port()
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(parent.stdout.readline())
        assert _alive(pids["broker"]) and _alive(pids["child"]) and not port_is_free(port)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (_alive(pids["broker"]) or _alive(pids["child"])):
            time.sleep(0.1)
        assert not _alive(pids["broker"]), "the broker outlived its parent"
        assert not _alive(pids["child"]), "the child outlived its parent"
        assert port_is_free(port)
    finally:
        parent.kill()
