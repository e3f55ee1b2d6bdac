"""``nas search`` user mistakes: one ``error:`` line, exit status 2, within seconds, nothing written."""

import socket
import time
from pathlib import Path

import pytest

TINY = Path(__file__).parents[2] / "bench" / "data" / "tiny_space.yaml"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, words", [
    (["--space", "resnset", "--budget", "4G"], "unknown space 'resnset'"),
    (["--space", "resnest", "--budget", "four"], "cannot read budget 'four'"),
    (["--space", "resnest", "--budget", "10M"], "no candidate of space resnest fits the budget"),
    (["--space", "resnest", "--budget", "4G", "--trials", "0"], "--trials must be at least 1"),
    (["--space", "resnest", "--budget", "4G", "--sampler", "cmaes"], "unknown sampler 'cmaes'"),
    (["--space", "resnest", "--budget", "4G", "--objectives", "accuracy,speed"], "unknown objective 'speed'"),
    (["--space", "resnest", "--budget", "4G", "--objectives", "flops,accuracy"], "must start with accuracy"),
    (["--space", "resnest", "--budget", "4G", "--storage", "nosuchdb://x/y"], "no database driver"),
    (["--space", "resnest", "--budget", "4G", "--storage", "sqlite:///{tmp}/no/such/dir/x.db"], "does not exist"),
    (["--space", "resnest", "--budget", "4G", "--storage", "{notadb}"], "is not an SQLite database"),
    (["--space", "resnest", "--budget", "4G", "--storage", "postgresql://postgres@127.0.0.1:1/test"],
     "nothing answers at 127.0.0.1:1"),
    (["--space", "resnest", "--budget", "4G", "--dataset", "cifar10:{tmp}/nothing"], "cifar"),
    (["--space", "resnest", "--budget", "4G", "--train-images", "999999"], "--train-images 999999 but dataset"),
    (["--space", "resnest", "--budget", "4G", "--address", "127.0.0.1:{port}"], "nothing is listening there"),
    (["--space", "resnest", "--budget", "4G", "--device", "cpu", "--gpus-per-trial", "1"], "--gpus-per-trial with"),
    (["--space", "resnest", "--budget", "4G", "--eta", "1"], "--eta must be at least 2"),
    (["--space", "resnest", "--budget", "4G", "--grace", "0"], "--grace must be at least 1"),
    (["--space", "resnest", "--budget", "4G", "--epochs", "3", "--grace", "4"], "--grace 4 is above the 3-epoch"),
    (["--space", "resnest", "--budget", "4G", "--trial-timeout", "0"], "--trial-timeout must be a positive"),
    (["--space", "resnest", "--budget", "4G", "--trial-timeout", "-5"], "--trial-timeout must be a positive"),
    (["--space", "resnest", "--budget", "4G", "--storage", "postgresql://u@host:notaport/db"], "cannot read storage"),
    (["--space", "resnest", "--budget", "4G", "--trial-resources", "fast=x"], "--trial-resources: cannot read"),
    (["--space", "resnest", "--budget", "4G", "--study", ""], "--study is empty"),
    (["--space", "resnest", "--budget", "4G", "--study", "  "], "--study is empty"),
])
def test_mistakes_are_one_line_and_write_nothing(cli, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    notadb = tmp_path / "notes.txt"
    notadb.write_text("not a database")
    args = [a.format(tmp=tmp_path, notadb=notadb, port=_free_port()) for a in args]
    start = time.monotonic()
    code, out, err = cli("search", *args)
    assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert time.monotonic() - start < 30
    assert not (tmp_path / "nas.db").exists()  # the default storage was not created
    assert notadb.read_text() == "not a database"


def test_postgres_wrong_database_or_user(cli, tmp_path, monkeypatch, postgres_url):
    monkeypatch.chdir(tmp_path)
    base = postgres_url.rsplit("/", 1)[0]
    for url, words in ((base + "/nas_no_such_db", 'database "nas_no_such_db" does not exist'),
                       (postgres_url.replace("postgres@", "nas_no_such_user@"), 'role "nas_no_such_user" does not')):
        start = time.monotonic()
        code, _, err = cli("search", "--space", "resnest", "--budget", "4G", "--storage", url)
        assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err
        assert time.monotonic() - start < 30


def test_gpu_options_on_a_cluster_without_gpus(cli, tmp_path, ray_cluster):
    for args, words in ((["--gpus-per-trial", "0.5"], "--gpus-per-trial 0.5 but the Ray cluster has no GPU"),
                        (["--device", "cuda"], "--device cuda but the Ray cluster has no GPU")):
        code, _, err = cli("search", "--space", TINY, "--budget", "5M", "--storage", tmp_path / "x.db", *args)
        assert code == 2 and words in err and err.count("\n") == 1
        assert not (tmp_path / "x.db").exists()


def test_help_lists_every_option(cli):
    code, out, _ = cli("search", "--help")
    for option in ("--space", "--budget", "--trials", "--study", "--storage", "--dataset", "--epochs",
                   "--train-images", "--val-images", "--batch-size", "--sampler", "--objectives",
                   "--cpus-per-trial", "--gpus-per-trial", "--max-concurrent", "--address", "--seed", "--device",
                   "--resolution", "--lr", "--no-early-stopping", "--grace", "--eta", "--trial-timeout",
                   "--trial-resources", "--artifacts", "--train-seed"):
        assert option in out


def test_every_option_reaches_search_options():
    """An option whose argparse name is not a SearchOptions field would be lost between the command
    line and the search: each one must arrive, with the value typed."""
    import argparse

    from nas.cli import build_parser
    from nas.search.options import SearchOptions

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["search"]
    dests = {a.dest for a in sub._actions if a.dest != "help"}
    assert dests <= set(SearchOptions.__dataclass_fields__), dests - set(SearchOptions.__dataclass_fields__)
    args = parser.parse_args(["search", "--space", "resnest", "--budget", "4G", "--train-seed", "7", "--lr", "0.5",
                              "--no-early-stopping", "--study", "s"])
    opts = SearchOptions(**{k: v for k, v in vars(args).items() if k not in ("func", "command")})
    assert (opts.train_seed, opts.lr, opts.early_stopping, opts.study) == (7, 0.5, False, "s")


def test_early_stopping_with_one_epoch_says_so_once_and_goes_on(cli, tmp_path, ray_cluster):
    code, out, err = cli("search", "--space", TINY, "--budget", "5M", "--trials", "1", "--epochs", "1",
                         "--train-images", "64", "--val-images", "32", "--batch-size", "32",
                         "--storage", tmp_path / "x.db")
    assert code == 0 and err.count("note: early stopping has no effect with 1 epoch(s)") == 1
    assert "stopping  off" in out
