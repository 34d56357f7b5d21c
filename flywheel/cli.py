"""`flywheel`: the command line. Each subcommand is a module in flywheel/commands that defines
`register(subparsers)`; adding a command is adding a file.

A user's mistake (a bad flag value, a missing file, a broker that is not there) is one line on
stderr and a non-zero exit. A traceback means a bug in Flywheel.
"""
import argparse
import sys

from flywheel import commands
from flywheel.commands._examples import epilog
from flywheel.config import load_config
from flywheel.extras import missing_extra

OUR_PACKAGES = {"flywheel", "schemas", "streams", "processors", "feature_store"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flywheel",
        description="Streaming inference and feedback: publish requests, serve ONNX models, "
                    "join ground truth, watch drift, retrain. Configuration: --config FILE "
                    "(TOML), FLYWHEEL_* environment variables, then flags.")
    parser.add_argument("-c", "--config", metavar="FILE", help="TOML config file (default: "
                        "$FLYWHEEL_CONFIG or ./flywheel.toml)")
    parser.add_argument("--data-dir", metavar="DIR", help="where the embedded stack keeps state "
                        "(default .flywheel; env FLYWHEEL_DATA_DIR)")
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers "
                        "(default: the embedded broker; env FLYWHEEL_BOOTSTRAP)")
    parser.add_argument("--topic-prefix", metavar="PREFIX", help="prefix of every topic name")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    commands.register_all(sub)
    for name, command in sub.choices.items():
        if command.epilog is None:
            command.epilog = epilog(name)
            command.formatter_class = ExamplesFormatter
    return parser


class ExamplesFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps the examples epilog's lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = None
    try:
        kafka = {k: v for k, v in (("bootstrap", args.bootstrap), ("topic_prefix", args.topic_prefix))
                 if v is not None}
        config = load_config(args.config, data_dir=args.data_dir, kafka=kafka)
        return int(args.handler(args, config) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        e = missing_extra(e) or e        # a command reaching for an extra that is not installed
        if not _is_user_facing(e):
            raise
        # Our errors never carry a secret; a library's message might, so scrub it anyway.
        message = config.redact(str(e)) if config is not None else str(e)
        print(f"flywheel {args.command}: {message}", file=sys.stderr)
        return 1


def _is_user_facing(e: Exception) -> bool:
    """Our typed errors and missing files are the user's to fix; anything else is a bug."""
    return type(e).__module__.split(".")[0] in OUR_PACKAGES or isinstance(e, (FileNotFoundError, PermissionError))


if __name__ == "__main__":
    sys.exit(main())
