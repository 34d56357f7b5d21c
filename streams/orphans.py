"""Child processes that do not outlive their parent.

The stack starts its broker and processors in their own sessions (a terminal's Ctrl-C goes to
the supervisor, which stops them in order), so nothing reaches them when the supervisor itself
is killed with SIGKILL or by the OOM killer: they kept running, holding ports and both cores.
On Linux the kernel can send a child a signal when its parent dies (prctl PR_SET_PDEATHSIG); it
is set between fork and exec, so it covers the Tansu binary as well as Python children.
Elsewhere this is a no-op.
"""
import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen that has the child sent `sig` when this process dies;
    None where the kernel offers no such thing.

    The C function is looked up here, in the parent, so the child between fork and exec makes one
    plain call and takes no lock another thread may have held at the fork. The kernel signals on
    the death of the thread that forked: start children from a thread that lives as long as they
    should (the stack's main thread)."""
    libc = ctypes.util.find_library("c")
    prctl = getattr(ctypes.CDLL(libc, use_errno=True), "prctl", None) if libc else None
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:      # the parent died before the call: nobody would signal
            os._exit(1)
    return preexec
