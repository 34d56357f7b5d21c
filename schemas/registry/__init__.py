"""Schema registries behind one interface: Confluent Schema Registry when a URL is configured,
the embedded SQLite registry otherwise."""
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.schemas.secret import Secret


@dataclass(frozen=True)
class RegistryAccess:
    """How to reach a Confluent Schema Registry: basic auth and TLS files (PEM)."""
    username: str = ""
    password: Secret = Secret()
    ca_location: str = ""
    certificate_location: str = ""
    key_location: str = ""

    def client_config(self) -> dict:
        conf = {"basic.auth.user.info": f"{self.username}:{self.password.reveal()}"} if self.username else {}
        for name, value in (("ssl.ca.location", self.ca_location),
                            ("ssl.certificate.location", self.certificate_location),
                            ("ssl.key.location", self.key_location)):
            if value:
                conf[name] = value
        return conf


def split_credentials(url: str) -> tuple[str, str, Secret]:
    """A URL without its user:password part, and that part (credentials belong in settings, but
    one written into the URL must still never be printed)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, "", Secret()
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host)), unquote(parts.username), Secret(unquote(parts.password or ""))


def open_registry(url: str | None, data_dir: Path, default_mode: str = "BACKWARD",
                  access: RegistryAccess = RegistryAccess()) -> SchemaRegistry:
    if url:
        from flywheel.schemas.registry.confluent import ConfluentRegistry
        url, username, password = split_credentials(url)
        if username and not access.username:
            access = RegistryAccess(username, password, access.ca_location, access.certificate_location,
                                    access.key_location)
        return ConfluentRegistry(url, default_mode=default_mode, access=access)
    from flywheel.schemas.registry.embedded import EmbeddedRegistry
    return EmbeddedRegistry(Path(data_dir) / "schemas.sqlite", default_mode=default_mode)


__all__ = ["SchemaRegistry", "RegistryAccess", "open_registry", "split_credentials"]
