"""A secret setting (password, signing key): a value that never prints.

Settings dataclasses hold secrets as `Secret`, so a repr of the settings, an f-string, a log
line or an error message shows `<redacted>`; only the code that hands the value to a client
(librdkafka, the Schema Registry session, the Cassandra auth provider, HMAC) calls `reveal()`.
It lives here, in the package everything else may import, because every layer holds secrets.
"""
from dataclasses import dataclass, field

REDACTED = "<redacted>"


@dataclass(frozen=True)
class Secret:
    value: str = field(default="", repr=False)

    def reveal(self) -> str:
        return self.value

    def __bool__(self) -> bool:
        return bool(self.value)

    def __str__(self) -> str:
        return REDACTED if self.value else ""

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})" if self.value else "Secret('')"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)
