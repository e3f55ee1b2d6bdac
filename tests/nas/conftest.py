import pytest

from nas.cli import main


@pytest.fixture
def cli(capsys):
    """Run ``nas ARGV`` in-process; returns (exit status, stdout, stderr) whether main returns the
    status or argparse exits with it."""

    def run(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
