"""The artifact store: <data_dir>/models/<model>/<version>/{model.onnx, manifest.json}.

It is the registry's record of what was registered: the manifest written at registration holds
the artifact's sha256. Readers name a model and a version, never a path: the store resolves
them under its own root and checks the bytes against its own record, so a ModelEvent (whoever
wrote it) can choose only among versions registered here, and a file changed after
registration is refused."""
import hashlib
import re
import time
from dataclasses import replace
from pathlib import Path

from flywheel.processors.models.errors import (
    ForgedEvent,
    InvalidName,
    ManifestError,
    TamperedModel,
    UnregisteredVersion,
)
from flywheel.processors.models.manifest import Manifest

# No separators, no leading dot: a name can never climb out of (or hide in) the store's root.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_name(what: str, name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidName(f"{what} name {str(name)[:100]!r} must be letters, digits, '_', '-' or '.' "
                          f"(at most 100, not starting with '.')")
    return name


class ArtifactStore:
    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "models"

    def directory(self, model: str, version: str) -> Path:
        return self.root / check_name("model", model) / check_name("version", version)

    def models(self) -> list[str]:
        """Every model with a registered version (a manifest); a bare directory (a writer's
        lock) is not one."""
        return sorted({p.parent.parent.name for p in self.root.glob("*/*/manifest.json")})

    def has_model(self, model: str) -> bool:
        """Whether any version of `model` was registered here (a name safe to use as a label)."""
        return bool(NAME.match(model)) and (self.root / model).is_dir()

    def save(self, onnx_bytes: bytes, manifest: Manifest) -> tuple[Path, Manifest]:
        """Write the artifact and its manifest (with the artifact's sha256); return the manifest path."""
        directory = self.directory(manifest.model, manifest.version)
        check_name("artifact", manifest.artifact)
        if (directory / "manifest.json").exists():
            raise ManifestError(f"{manifest.model} version {manifest.version} is already registered")
        directory.mkdir(parents=True, exist_ok=True)
        manifest = replace(manifest, sha256=sha256_of(onnx_bytes), registered_at=int(time.time() * 1000))
        (directory / manifest.artifact).write_bytes(onnx_bytes)
        (directory / "manifest.json").write_text(manifest.to_json())
        return directory / "manifest.json", manifest

    def manifest(self, model: str, version: str) -> Manifest:
        """The manifest recorded at registration (not verified against the artifact)."""
        path = self.directory(model, version) / "manifest.json"
        if not path.is_file():
            raise UnregisteredVersion(f"REFUSED {model}/{version}: not registered in the artifact store {self.root}")
        manifest = Manifest.read(path)
        if (manifest.model, manifest.version) != (model, version):
            raise ManifestError(f"REFUSED {model}/{version}: its manifest names {manifest.model}/{manifest.version}")
        check_name("artifact", manifest.artifact)
        return manifest

    def load(self, model: str, version: str, claimed_sha256: str | None = None) -> tuple[Manifest, bytes]:
        """The manifest and verified artifact bytes of a registered version. `claimed_sha256`
        (what a ModelEvent says) must agree with the store's record, or the event is forged:
        ForgedEvent. TamperedModel if the bytes do not match the record."""
        manifest = self.manifest(model, version)
        if claimed_sha256 is not None and claimed_sha256 != manifest.sha256:
            raise ForgedEvent(f"REFUSED {model}/{version}: the event claims sha256 {str(claimed_sha256)[:16]}…, "
                              f"the registry recorded {manifest.sha256[:16]}…")
        artifact = self.directory(model, version) / manifest.artifact
        try:
            data = artifact.read_bytes()
        except FileNotFoundError:
            raise ManifestError(f"artifact {artifact} of {model}/{version} is missing") from None
        actual = sha256_of(data)
        if actual != manifest.sha256:
            raise TamperedModel(f"REFUSED {model}/{version}: {artifact} has sha256 {actual[:16]}…, "
                                f"the registry recorded {manifest.sha256[:16]}…; "
                                "the file was changed after registration")
        return manifest, data
