"""The garbage collector's settings for a processor's hot loop.

A batch allocates tens of thousands of short-lived objects (decoded records, rows, dicts), none
of them in reference cycles, yet with CPython's default threshold (700 allocations) the cyclic
collector runs every few hundred records and, every tenth and hundredth time, walks the
process's long-lived state too. Measured on the joiner's join (benchmarks/bench_loop.py): 34k
records per CPU second with the default, 55k with a young-generation threshold of 50,000.
Reference counting still frees everything at once; only cycles wait longer to be found.
"""
import atexit
import gc

YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect less often, and never scan what exists at start-up (modules, models, settings)."""
    gc.collect()
    gc.freeze()
    # Frozen objects are left out of the final collection too: native ones (DataSketches) would
    # then be reported as leaked when the process exits.
    atexit.register(gc.unfreeze)
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
