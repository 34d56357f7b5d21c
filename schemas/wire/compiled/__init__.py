"""The compiled core of the joiner's per-record work (records.pyx, Cython): Predictions and
GroundTruths read from bytes, FeedbackRecords written, as fastavro and the Python modules beside
this folder do, only faster. `pip install` builds it where it finds a C compiler and skips it
where it does not; Flywheel then runs on the Python path, which stays the reference."""
try:
    from flywheel.schemas.wire.compiled import records
except ImportError:          # not built: no C compiler at install time, or a source tree never installed
    records = None


def runs(wanted: bool = True) -> str:
    """Which path a codec asked for the compiled one (`wanted`) runs: "compiled" or "python"."""
    return "compiled" if wanted and records is not None else "python"
