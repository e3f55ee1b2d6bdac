"""Storage URLs as users type them: every mistake is one line, found before anything is written."""

import sqlite3
import time

import optuna
import pytest

from nas.search_spaces.errors import UserError
from nas.storage import open_storage, parse_storage


def test_plain_path_is_an_sqlite_file_in_wal_mode(tmp_path):
    path = tmp_path / "studies.db"
    storage = open_storage(str(path))
    optuna.create_study(storage=storage, study_name="s")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("text, words", [
    ("sqlite:///{tmp}/missing/x.db", "does not exist"),
    ("sqlite://", "in-memory"),
    ("{tmp}", "is a folder"),
    ("nosuchdb://host/x", "no database driver"),
    ("journal:{tmp}/missing/j.log", "does not exist"),
])
def test_bad_urls_are_one_line_errors(tmp_path, text, words):
    with pytest.raises(UserError, match=words) as info:
        parse_storage(text.format(tmp=tmp_path))
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("my notes")
    with pytest.raises(UserError, match="not an SQLite database"):
        open_storage(str(path))
    assert path.read_text() == "my notes"


def test_readers_do_not_create_a_database(tmp_path):
    with pytest.raises(UserError, match="no study storage"):
        open_storage(str(tmp_path / "typo.db"), create=False)
    assert not (tmp_path / "typo.db").exists()


def test_unreachable_server_fails_within_seconds():
    start = time.monotonic()
    with pytest.raises(UserError, match="nothing answers"):
        open_storage("postgresql://postgres@127.0.0.1:1/test")
    assert time.monotonic() - start < 10


def test_journal_file_storage(tmp_path):
    storage = open_storage(f"journal:{tmp_path}/j.log")
    optuna.create_study(storage=storage, study_name="s")
    assert (tmp_path / "j.log").exists()


def test_postgres_wrong_database_or_user_is_one_line(postgres_url):
    base = postgres_url.rsplit("/", 1)[0]
    with pytest.raises(UserError, match='database "nas_no_such_db" does not exist'):
        open_storage(base + "/nas_no_such_db")
    with pytest.raises(UserError, match='role "nas_no_such_user" does not exist'):
        open_storage(postgres_url.replace("postgres@", "nas_no_such_user@"))
