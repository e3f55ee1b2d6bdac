"""``nas dashboard`` on the command line: the report is written, and every user mistake is one line,
exit status 2, nothing written."""

from __future__ import annotations

import socket

import pytest


def _one_line_error(code, out, err, *words):
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def test_writes_the_report(cli, two_studies, tmp_path):
    url, names = two_studies
    out_file = tmp_path / "cmp.html"
    code, out, err = cli("dashboard", "--storage", url, "--study", names[0], "--study", names[1], "-o", out_file,
                         "--color-by", "depth")
    assert code == 0, err
    assert out.startswith(f"wrote {out_file}") and "2 studies" in out and "190 trials" in out
    text = out_file.read_text()
    assert text.startswith("<!DOCTYPE html>") and names[0] in text and names[1] in text


def test_one_study_needs_no_name(cli, one_study, tmp_path, monkeypatch):
    url, name = one_study
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("dashboard", "--storage", url)
    assert code == 0 and (tmp_path / "report.html").exists() and "1 study" in out


@pytest.mark.parametrize("case", ["unknown", "empty", "several", "no-storage", "missing-folder", "folder",
                                  "file-as-folder", "bad-color"])
def test_bad_input_is_one_line_and_writes_nothing(cli, two_studies, tmp_path, case):
    url, names = two_studies
    target = tmp_path / "out.html"
    args = ["dashboard", "--storage", url, "--study", names[0], "-o", target]
    words: tuple[str, ...] = ()
    if case == "unknown":
        args[4], words = "nope", ("no study named 'nope'", "synthetic-resnest")
    elif case == "empty":
        args[4], words = "synthetic-empty", ("'synthetic-empty' has no trials yet",)
    elif case == "several":
        args = ["dashboard", "--storage", url, "-o", target]
        words = ("holds 3 studies; pick one with --study", "synthetic-empty", names[0], names[1])
    elif case == "no-storage":
        args[2], words = f"sqlite:///{tmp_path / 'typo.db'}", ("no study storage",)
    elif case == "missing-folder":
        target = tmp_path / "nowhere" / "out.html"
        args[-1], words = target, ("does not exist",)
    elif case == "folder":
        target = tmp_path
        args[-1], words = target, ("is a folder",)
    elif case == "file-as-folder":
        (tmp_path / "afile").write_text("x")
        target = tmp_path / "afile" / "out.html"
        args[-1], words = target, ("cannot write report",)
    elif case == "bad-color":
        args += ["--color-by", "bogus"]
        words = ("--color-by 'bogus'",)
    before = sorted(p.name for p in tmp_path.iterdir())
    _one_line_error(*cli(*args), *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temporary left
    assert not (tmp_path / "typo.db").exists()


def test_port_in_use_is_one_line(cli, two_studies):
    url, names = two_studies
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        _one_line_error(*cli("dashboard", "--serve", "--storage", url, "--study", names[0], "--port", port),
                        f"port {port} on 127.0.0.1 is in use")


def test_help_describes_the_command(cli):
    code, out, _ = cli("dashboard", "--help")
    assert code == 0 and "--serve" in out and "--color-by" in out and "--study" in out
