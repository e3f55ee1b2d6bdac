"""The ``nas`` command line. Every user mistake ends in one ``error: ...`` line and exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nas import __version__
from nas.search_spaces.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage dump), like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from nas.cli import dashboard, export, model, search, space, studies, train

    parser = _Parser(
        prog="nas",
        description="Design-space exploration and architecture search for ResNet-family CNNs "
                    "(ResNeXt, SE, SK, ResNeSt). FLOPs are multiply-adds.",
        epilog="Run 'nas COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    model.add_parser(sub)
    space.add_parser(sub)
    train.add_parser(sub)
    search.add_parser(sub)
    studies.add_parser(sub)
    dashboard.add_parser(sub)
    export.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
