"""Fixtures: every integration test runs on SQLite and on PostgreSQL.

PostgreSQL is required: if it cannot be reached the run fails, unless
FENXIAO_SKIP_POSTGRES=1 says out loud that it should be left out.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from commands import Fenxiao
from commands.settings import Settings
from migrations import upgrade

settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))

POSTGRES_URL = os.environ.get(
    "FENXIAO_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/fenxiao_test")
SKIP_POSTGRES = os.environ.get("FENXIAO_SKIP_POSTGRES") == "1"
BACKENDS = ["sqlite"] if SKIP_POSTGRES else ["sqlite", "postgresql"]


def pytest_report_header(config: pytest.Config) -> str:
    if SKIP_POSTGRES:
        return "PostgreSQL tests LEFT OUT (FENXIAO_SKIP_POSTGRES=1)"
    return f"PostgreSQL tests against {make_url(POSTGRES_URL).render_as_string()}"


def _create_postgres_database(url: str) -> None:
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": target.database}).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    except Exception as error:
        pytest.exit(f"PostgreSQL is not reachable at {target.render_as_string()}: {error}. "
                    "Start it (see README) or set FENXIAO_SKIP_POSTGRES=1 to leave those "
                    "tests out knowingly.", returncode=3)
    finally:
        admin.dispose()


def _drop_everything(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in inspect(conn).get_table_names():
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[str]:
    """A migrated database for the whole session, one per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'fenxiao.db'}"
    else:
        url = POSTGRES_URL
        _create_postgres_database(url)
        _drop_everything(url)
    upgrade(url)
    yield url


def wipe(url: str) -> None:
    """Empty every table but Alembic's own, restarting the event ids."""
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        if conn.dialect.name == "postgresql":
            # A connection an earlier test left open with a lock would hang the whole
            # run here: this test fails instead, on a lock timeout.
            conn.execute(text("SET LOCAL lock_timeout = '60s'"))
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                              + " RESTART IDENTITY"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
    engine.dispose()


@pytest.fixture
def db_url(database_url: str) -> str:
    """The session database, emptied for this test."""
    wipe(database_url)
    return database_url


@pytest.fixture
def app(db_url: str) -> Iterator[Fenxiao]:
    # No rate limits here (tests fire requests faster than any client); tested on their own.
    application = Fenxiao(Settings(database_url=db_url, rate_limit=None,
                                   auth_failure_limit=None))
    yield application
    application.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'fenxiao.db'}"
    upgrade(url)
    return url


@pytest.fixture
def api(app: Fenxiao) -> Iterator["Api"]:
    """The HTTP API on the test database, with the projection worker running."""
    from api import create_app
    from tests.api_support import Api

    flask = create_app(app.settings, application=app, start_worker=True)
    yield Api(flask.test_client(), app.engine)
    flask.extensions["fenxiao_runner"].stop()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; stopped (and killed if need be) after it."""
    running: list[subprocess.Popen] = []
    yield running
    for process in running:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def hooks_api(db_url: str) -> Iterator[Any]:
    """The API with webhooks allowed to loopback receivers (tests/webhook_support.py)."""
    from tests.webhook_support import hooks_api_on
    yield from hooks_api_on(db_url)


@pytest.fixture
def bare_api(db_url: str) -> Iterator[Any]:
    """The same without a projection worker: for tests that read no read model."""
    from tests.webhook_support import hooks_api_on
    yield from hooks_api_on(db_url, worker=False)
