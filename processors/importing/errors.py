from flywheel.errors import Refused


class ImportRefused(Refused, ValueError):
    """The model or sample cannot become a serving version; the message says why and what to do."""
