"""Storage URLs as users type them: every mistake is one line, found before anything is written."""

import sqlite3
import time

import optuna
import pytest

from nas.common.errors import UserError
from nas.study.storage import open_storage, parse_storage


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


def test_a_new_file_appears_whole_to_readers_and_to_a_second_writer(tmp_path):
    """Readers polling (a status loop, a dashboard) and a second driver starting at the same moment
    never see, nor race to create, a half-made schema (they once failed: "table studies already exists")."""
    import threading

    for i in range(8):
        path = tmp_path / f"s{i}.db"
        errors = []

        def read(path=path, errors=errors):
            for _ in range(40):
                try:
                    open_storage(str(path), create=False)
                except UserError as exc:
                    if "no study storage" not in str(exc):
                        errors.append(str(exc))

        def write(path=path, errors=errors):
            try:
                optuna.create_study(storage=open_storage(str(path)), study_name="s", load_if_exists=True)
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=f) for f in (read, write, write, read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_second_driver_waits_for_the_schema_another_is_making(tmp_path):
    """Two searches started at the same moment on a new file: the second's pre-flight check found
    the file before its schema and stopped with "no study storage ... yet" (seen in CI)."""
    import threading
    import time

    path = tmp_path / "s.db"
    sqlite3.connect(path).close()  # the first driver's file, still without tables
    maker = threading.Timer(0.5, lambda: open_storage(str(path)))
    maker.start()
    start = time.monotonic()
    with pytest.raises(UserError, match="yet"):
        open_storage(str(path), create=False)  # a reader does not wait
    open_storage(str(path), create=False, wait_s=10.0)  # the driver's check does
    maker.join()
    assert time.monotonic() - start < 5


def test_heartbeats_on_a_database_server_go_by_its_clock(postgres_url, study_name, monkeypatch):
    """Drivers on several machines judge each other's heartbeats by the PostgreSQL server's clock:
    a driver on a machine whose clock is five minutes behind still looks alive to the others, and
    its running trial is not failed as orphaned."""
    from optuna.trial import TrialState

    from nas.study.liveness import Driver, drivers
    from nas.study.records import DRIVER_ATTR
    from nas.study.requeue import recover_orphans
    from nas.study.storage import clock
    from nas.study.writer import DeferredStorage

    storage = DeferredStorage(optuna.storages.get_storage(open_storage(postgres_url)))
    study = optuna.create_study(study_name=study_name, storage=storage)
    assert abs(clock(storage) - time.time()) < 30  # the server's clock, read through every wrapper
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 300)  # this "machine" runs five minutes behind
    skewed = Driver(storage, study._study_id)
    skewed.record.machine = "elsewhere@1"  # another machine: judged by its heartbeat, not a pid
    skewed.beat(force=True)
    trial = study.ask()
    storage.set_trial_system_attr(trial._trial_id, DRIVER_ATTR, skewed.id)
    monkeypatch.setattr(time, "time", real)
    record = drivers(storage, study._study_id)[skewed.id]
    assert abs(record.heartbeat - real()) < 30
    assert recover_orphans(study, storage, me="someone-else") == []
    assert study.trials[0].state == TrialState.RUNNING
    optuna.delete_study(study_name=study_name, storage=storage)
