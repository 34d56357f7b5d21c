"""The artifact store: <data_dir>/models/<model>/<version>/{model.onnx, manifest.json}.
Every read checks the artifact's sha256 against the one the registry holds."""
import hashlib
import re
import time
from dataclasses import replace
from pathlib import Path

from processors.models.errors import ManifestError, TamperedModel
from processors.models.manifest import Manifest

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "models"

    def directory(self, model: str, version: str) -> Path:
        for what, name in (("model", model), ("version", version)):
            if not NAME.match(name):
                raise ManifestError(f"{what} name {name!r} must be letters, digits, '_', '-' or '.'")
        return self.root / model / version

    def save(self, onnx_bytes: bytes, manifest: Manifest) -> tuple[Path, Manifest]:
        """Write the artifact and its manifest (with the artifact's sha256); return the manifest path."""
        directory = self.directory(manifest.model, manifest.version)
        if (directory / "manifest.json").exists():
            raise ManifestError(f"{manifest.model} version {manifest.version} is already registered")
        directory.mkdir(parents=True, exist_ok=True)
        manifest = replace(manifest, sha256=sha256_of(onnx_bytes), registered_at=int(time.time() * 1000))
        (directory / manifest.artifact).write_bytes(onnx_bytes)
        (directory / "manifest.json").write_text(manifest.to_json())
        return directory / "manifest.json", manifest

    def load(self, manifest_path: str | Path, expected_sha256: str) -> tuple[Manifest, bytes]:
        """The manifest and verified artifact bytes; TamperedModel if the bytes do not match."""
        manifest_path = Path(manifest_path)
        manifest = Manifest.read(manifest_path)
        artifact = manifest_path.parent / manifest.artifact
        try:
            data = artifact.read_bytes()
        except FileNotFoundError:
            raise ManifestError(f"artifact {artifact} of {manifest.model}/{manifest.version} is missing") from None
        actual = sha256_of(data)
        if actual != expected_sha256 or manifest.sha256 != expected_sha256:
            raise TamperedModel(f"REFUSED {manifest.model}/{manifest.version}: {artifact} has sha256 {actual[:16]}…, "
                                f"the registry says {expected_sha256[:16]}…; the file was changed after registration")
        return manifest, data
