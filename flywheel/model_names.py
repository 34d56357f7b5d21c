"""A model named on the command line (`-m/--model`), checked against the registry before a
command acts on it: a typo must not create a model's lock, topics or report section. Registered
means a version in the data dir's artifact store, which every process of a deployment shares
and which answers whether or not a broker runs (`report` works after the stack stopped)."""
from collections.abc import Iterable

from flywheel.config import Config
from flywheel.processors.models.errors import UnknownModel
from flywheel.processors.models.store import ArtifactStore
from flywheel.schemas.errors import clip


def check_registered(config: Config, models: str | Iterable[str] | None, hint: str = "") -> None:
    """Raise UnknownModel naming the registered models unless every one of `models` (an option's
    value: one name, a repeated option's list, or None when not given) is one."""
    names = [models] if isinstance(models, str) else list(models or [])
    known = ArtifactStore(config.data_dir).models() if names else []
    unknown = [m for m in names if m not in known]
    if unknown:
        raise UnknownModel(unknown_model(unknown[0], known, hint))


def unknown_model(model: str, known: list[str], hint: str = "") -> str:
    """One line naming the model refused and the models there are."""
    registered = f"registered: {', '.join(known)}" if known else "no model is"
    return f"model {clip(model)!r} is not registered ({registered})" + (f"; {hint}" if hint else "")
