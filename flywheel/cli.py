"""`flywheel`: the command line. Each subcommand is a module in flywheel/commands that defines
`register(subparsers)`; adding a command is adding a file.

The error tree (flywheel/errors.py) decides how a command ends: a `UserError` (a bad flag value,
a missing file, an unknown model) is one line on stderr and exit 1; an `Unavailable` dependency (a
broker that is not there) is one line and exit 75, EX_TEMPFAIL: the same command may work later.
Anything else propagates: a traceback means a bug in Flywheel.
"""
import argparse
import sys

from flywheel import commands
from flywheel.commands._examples import epilog
from flywheel.config import load_config
from flywheel.errors import Unavailable, UserError
from flywheel.extras import missing_extra

EXIT_USER_ERROR = 1
EXIT_TRY_LATER = 75     # sysexits.h EX_TEMPFAIL


# The options before the command that take a value: the word after one is not the command.
VALUED = ("-c", "--config", "--data-dir", "--bootstrap", "--topic-prefix")


def command_named(argv: list[str]) -> str | None:
    """The command word of `argv`: the first word that is neither an option nor an option's value."""
    words = iter(argv)
    for word in words:
        if word in VALUED:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `command` only that command's parser: every processor of
    `flywheel up` is a `flywheel COMMAND` process, and importing all commands' libraries (the
    import's scikit-learn and ONNX tools: 4 of 6 seconds) would slow each one's start."""
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
    commands.register_all(sub, command)
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
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_named(argv))
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
    except ModuleNotFoundError as e:
        # A command reaching for an extra that is not installed is the user's to fix, one line.
        advice = missing_extra(e)
        if advice is None:
            raise
        print(f"flywheel {args.command}: {advice}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (UserError, Unavailable) as e:
        # A message may quote a library's, which might carry a secret: scrub it. An error that
        # names several problems (a configuration's) gives each its own prefixed line; one with no
        # message still says what it was.
        message = config.redact(str(e)) if config is not None else str(e)
        for line in message.splitlines() or [type(e).__name__]:
            print(f"flywheel {args.command}: {line}", file=sys.stderr)
        return EXIT_USER_ERROR if isinstance(e, UserError) else EXIT_TRY_LATER


if __name__ == "__main__":
    sys.exit(main())
