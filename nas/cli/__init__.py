"""The ``nas`` command line. Every user mistake ends in one ``error: ...`` line and exit status 2."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from nas import __version__
from nas.common.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage dump), like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        sys.exit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from nas.cli import dashboard, export, fidelity, model, search, space, studies, train

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
    fidelity.add_parser(sub)
    return parser


class _Terminated(Exception):  # noqa: N818 -- a signal, not an error
    pass


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM stops a command as Ctrl-C does (exit 143, not a kill with nothing said); a running
    # search installs its own graceful handler around its trials.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except _Terminated:
        sys.stderr.write("terminated\n")
        return 143
    except BrokenPipeError:
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
