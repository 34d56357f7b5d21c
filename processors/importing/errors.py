from flywheel.errors import Refused


class ImportRefused(Refused, ValueError):
    """The model or sample cannot become a serving version; the message says why and what to do."""


class ReferenceRefused(Refused, ValueError):
    """Rows cannot become a version's reference profile: none, or not in the version's columns."""
