"""Where studies live: storage URLs as users type them, opened with one-line errors.

``--storage`` takes an SQLAlchemy URL (``sqlite:///nas.db``, ``postgresql://user@host/db``), a
plain file path (an SQLite file), or ``journal:PATH`` (Optuna's journal file, for several
writers without a database server). The default is ``sqlite:///nas.db`` in the working
directory, or ``$NAS_STORAGE``.

SQLite files are opened in WAL mode with ``synchronous=NORMAL`` and a 60 s busy timeout:
readers (``nas status``, a dashboard, optuna-dashboard) never block the search's writes and
the search never fails with "database is locked" because of them; a commit costs no fsync,
and a killed process loses nothing (only an OS crash or power cut could lose the last
commits). PostgreSQL connections are checked before use (``pool_pre_ping``), so a connection
the server dropped is replaced instead of failing the search.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from nas.common.errors import UserError

DEFAULT_STORAGE = "sqlite:///nas.db"
SQLITE_BUSY_TIMEOUT_S = 60.0
_SQLITE_MAGIC = b"SQLite format 3\x00"

__all__ = ["DEFAULT_STORAGE", "NoStorage", "StorageURL", "open_storage", "parse_storage"]


class NoStorage(UserError):
    """A reader found nothing to read: no file, or a database server with no study tables yet."""


class StorageURL:
    """A parsed ``--storage`` value: ``kind`` is ``sqlite``, ``journal`` or ``rdb`` (any other
    SQLAlchemy database); ``path`` is the file for the first two."""

    def __init__(self, text: str, kind: str, url: str, path: Path | None = None) -> None:
        self.text, self.kind, self.url, self.path = text, kind, url, path

    def exists(self) -> bool:
        """Whether the file is there (a server database counts as existing: :func:`open_storage`
        with ``create=False`` tells whether it holds Optuna's tables)."""
        return self.path.exists() if self.path is not None else True

    def __str__(self) -> str:
        return self.display()

    def display(self) -> str:
        """The URL with any password hidden."""
        if self.kind != "rdb":
            return self.url
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)


def parse_storage(text: str | None) -> StorageURL:
    """Check a storage value's form and its local parts (folder exists, file is a database)."""
    text = (text or os.environ.get("NAS_STORAGE") or DEFAULT_STORAGE).strip()
    if not text:
        raise UserError("--storage is empty; give a URL like sqlite:///nas.db or postgresql://user@host/db")
    if text.startswith("journal:"):
        path = Path(text.removeprefix("journal:").removeprefix("//")).expanduser()
        _check_folder(path, text)
        return StorageURL(text, "journal", f"journal:{path}", path)
    if "://" not in text:  # a plain path: an SQLite file
        text = f"sqlite:///{text}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise UserError(f"cannot read storage URL {text!r} ({exc}); expected e.g. sqlite:///nas.db, "
                        f"postgresql://user@host/db or journal:FILE") from None
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise UserError(f"storage {text!r}: an in-memory SQLite database would vanish with the process; "
                            f"give a file, e.g. sqlite:///nas.db")
        path = Path(url.database).expanduser()
        _check_folder(path, text)
        if path.exists():
            _check_sqlite_file(path, text)
        return StorageURL(text, "sqlite", text, path)
    try:
        url.get_dialect()
    except Exception as exc:  # unknown dialect or missing driver package
        raise UserError(f"storage {url.render_as_string(hide_password=True)!r}: no database driver "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    return StorageURL(text, "rdb", text)


def _check_folder(path: Path, text: str) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"storage {text!r}: folder {folder} does not exist")
    if path.is_dir():
        raise UserError(f"storage {text!r}: {path} is a folder, not a file")


def _check_sqlite_file(path: Path, text: str) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise UserError(f"storage {text!r}: cannot read {path} ({exc.strerror})") from None
    if head and head != _SQLITE_MAGIC:
        raise UserError(f"storage {text!r}: {path} is not an SQLite database")


class _SQLiteConnect:
    """SQLAlchemy's ``creator`` for an SQLite file (a class, not a closure: storages get pickled).
    A writer's connections put the file in WAL mode; a reader's only wait when it is busy."""

    def __init__(self, path: Path, writer: bool = True) -> None:
        self.path, self.writer = str(path), writer

    def __call__(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
        if self.writer:
            conn.execute("PRAGMA journal_mode=WAL")  # persistent in the file; readers don't block the writer
            conn.execute("PRAGMA synchronous=NORMAL")  # no fsync per commit; safe against process death
        return conn


def _has_schema(path: Path) -> bool:
    """Whether an SQLite file already holds Optuna's tables (a reader writes nothing to find out)."""
    try:
        # Not mode=ro: SQLite cannot open a WAL database read-only once its last writer removed the
        # -wal and -shm files. A SELECT writes nothing to the database either way.
        conn = sqlite3.connect(str(path), timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            # Optuna's schema is complete once its alembic revision is stamped, the last step it takes.
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
                            ).fetchone() is None:
                return False
            return conn.execute("SELECT 1 FROM alembic_version").fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def _rdb_has_schema(url: str, engine_kwargs: dict[str, Any]) -> bool:
    """Whether a database server's database already holds Optuna's tables (read, never written):
    a new, empty database is a place for a first search, not a broken storage."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool,
                           **{k: v for k, v in engine_kwargs.items() if k != "pool_pre_ping"})
    try:
        with engine.connect() as conn:
            # Optuna's schema is complete once its alembic revision is stamped, the last step it takes.
            if not inspect(conn).has_table("alembic_version"):
                return False
            return conn.execute(text("SELECT 1 FROM alembic_version")).first() is not None
    finally:
        engine.dispose()


def _create_sqlite(path: Path) -> None:
    """Create a new study file's schema under an exclusive lock on its folder: a second driver
    starting at the same moment waits, then finds it made. Readers never write (they wait until
    the schema is there), so nobody races the creator."""
    import fcntl

    import optuna
    from sqlalchemy.pool import NullPool

    fd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not _has_schema(path):
            storage = optuna.storages.RDBStorage(
                f"sqlite:///{path}", engine_kwargs={"creator": _SQLiteConnect(path), "poolclass": NullPool})
            storage.remove_session()
            storage.engine.dispose()
    finally:
        os.close(fd)  # releases the lock


def _probe_server(url: Any) -> None:
    """Fail in seconds, not minutes, when nothing listens at a database server's address."""
    host, port = url.host, url.port
    if not host or host.startswith("/"):
        return  # a Unix socket: the driver's own error is quick
    port = port or {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}.get(url.get_backend_name())
    if port is None:
        return
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise UserError(f"storage {url.render_as_string(hide_password=True)!r}: nothing answers at "
                        f"{host}:{port} ({exc.strerror or exc})") from None


def open_storage(storage: StorageURL | str | None, create: bool = True, wait_s: float = 0.0) -> Any:
    """An Optuna storage for ``storage``. ``create=False`` refuses a missing SQLite or journal
    file (readers must not create an empty database where the user mistyped a path); ``wait_s``
    gives a file that another search is creating that long to get its schema."""
    import optuna

    su = storage if isinstance(storage, StorageURL) else parse_storage(storage)
    if not create and not su.exists():
        raise NoStorage(f"no study storage at {su.path} (run 'nas search' first, or pass --storage)")
    if su.kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(su.path)))
        except Exception as exc:
            raise UserError(f"storage {su.text!r}: cannot open journal ({_first_line(exc)})") from None
    from sqlalchemy.engine import make_url

    engine_kwargs: dict[str, Any]
    if su.kind == "sqlite":
        assert su.path is not None
        if create:
            if not _has_schema(su.path):
                _create_sqlite(su.path)
        else:
            deadline = time.monotonic() + wait_s
            while not _has_schema(su.path):
                if time.monotonic() >= deadline:
                    raise UserError(f"no study storage at {su.path} yet (a search may be creating it; try again)")
                time.sleep(0.1)
        engine_kwargs = {"creator": _SQLiteConnect(su.path, writer=create)}  # type: ignore[arg-type]
        if not create:
            # A reader holds no connection between reads. One kept open across a search's restart
            # keeps the old shared-memory index of the WAL mapped; closing it later, as the file's
            # "last" connection, checkpointed from that stale index and corrupted the file (measured:
            # a status loop across a driver's SIGINT and re-run).
            from sqlalchemy.pool import NullPool

            engine_kwargs["poolclass"] = NullPool
    else:
        url = make_url(su.url)
        _probe_server(url)
        engine_kwargs = {"pool_pre_ping": True}
        if url.get_backend_name() == "postgresql":
            # application_name: an administrator sees (and a test can single out) nas's connections.
            engine_kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "nas"}
    try:
        # A reader never creates tables (nor anything else): it only reads what a search wrote. A
        # connection dropped while the schema is checked is retried (a wrong database or user is not).
        if su.kind == "rdb" and not create and not retry_while(dropped, _rdb_has_schema, su.url, engine_kwargs):
            raise NoStorage(f"storage {su.display()!r} holds no study yet (run 'nas search' first, or pass "
                            f"--storage)")
        return retry_while(dropped, optuna.storages.RDBStorage, su.url, engine_kwargs=engine_kwargs,
                           skip_table_creation=not create)
    except UserError:
        raise
    except Exception as exc:  # sqlalchemy OperationalError/DatabaseError, a schema of another version
        raise UserError(f"storage {su.display()!r}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    # Optuna wraps SQLAlchemy's error (StorageInternalError: "An exception is raised during the
    # commit..."), which wraps the driver's: say the driver's
    cause = exc
    while cause.__cause__ is not None and getattr(cause, "orig", None) is None:
        cause = cause.__cause__
    orig = getattr(cause, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return (text[0] if text else type(orig).__name__)[:240]


# ---- riding out a dropped connection ---------------------------------------------------------------

RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)  # about 16 s in all: a database restart, a dropped link


def transient(exc: BaseException) -> bool:
    """A storage error worth retrying: the connection dropped (terminated by the server, a network
    cut) or the database was busy. Optuna wraps SQLAlchemy's errors in StorageInternalError."""
    from sqlalchemy import exc as sa_exc

    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 5:
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def dropped(exc: BaseException) -> bool:
    """An established connection that went away (terminated by the server, reset), as opposed to
    one that could not be made (a wrong database, user or password): only the first is retried
    while a storage opens, so a mistyped URL still fails in seconds."""
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 5:
        orig = getattr(e, "orig", None) or e
        state = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
        if state.startswith(("57P", "08")):  # operator intervention (pg_terminate_backend), connection exception
            return True
        text = str(orig).lower()
        if any(w in text for w in ("terminating connection", "server closed the connection", "connection reset",
                                   "connection already closed", "consuming input failed")):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def retry_while(when: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried (about 16 s in all) while it fails with an error ``when`` accepts."""
    for delay in (*RETRY_DELAYS_S, None):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if delay is None or not when(exc):
                raise
            time.sleep(delay)


def clock(storage: Any) -> float:
    """Now, in seconds since the epoch, by the clock every driver of a study shares: a database
    server's (drivers on several machines write and judge heartbeats by it, so a machine whose clock
    is off by a minute neither looks dead nor keeps a dead driver alive); this machine's for a file
    (SQLite, journal), whose drivers share a machine."""
    from nas.study.optuna_internals import rdb_of

    rdb, inner = None, storage
    # nas's own wrappers (DeferredStorage's _database and backend, Retrying's _storage) around the storage;
    # rdb_of sees through Optuna's read cache around an RDBStorage
    for _ in range(4):
        rdb = None if inner is None else rdb_of(inner)
        if rdb is not None:
            break
        inner = next((x for x in (getattr(inner, a, None) for a in ("_database", "backend", "_storage"))
                      if x is not None), None)
    if rdb is None or rdb.engine.dialect.name not in _SERVER_NOW:
        return time.time()
    from sqlalchemy import text

    def now() -> float:
        with rdb.engine.connect() as conn:
            return float(conn.execute(text(_SERVER_NOW[rdb.engine.dialect.name])).scalar_one())

    return with_retries(now)


_SERVER_NOW = {"postgresql": "SELECT EXTRACT(EPOCH FROM clock_timestamp())"}  # the server nas is tested on


def with_retries(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried while it fails with a :func:`transient` error."""
    return retry_while(transient, fn, *args, **kwargs)


class Retrying:
    """A storage whose every call rides out a dropped connection (:func:`with_retries`)."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._storage, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: with_retries(attr, *args, **kwargs)
