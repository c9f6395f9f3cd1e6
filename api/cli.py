"""The `fenxiao` command line."""
from __future__ import annotations

import logging
import signal
import sys

import click

from commands.settings import Settings


def _app():  # imported lazily so `fenxiao --help` stays fast
    from commands import Fenxiao

    return Fenxiao(Settings.from_env())


@click.group()
def main() -> None:
    """Fenxiao: event-sourced ledger for a supplier and its distributors.

    Every command reads FENXIAO_DATABASE_URL (default: the SQLite file var/fenxiao.db).
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("fenxiao").setLevel(logging.INFO)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema (a no-op when already there)."""
    from migrations import upgrade

    settings = Settings.from_env()
    upgrade(settings.database_url)
    click.echo(f"database at head: {_safe(settings.database_url)}", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Do not run the projections in-process.")
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, no_worker: bool, threads: int) -> None:
    """Serve the HTTP API (waitress)."""
    import waitress

    from api import create_app

    flask = create_app(start_worker=not no_worker)
    click.echo(f"Fenxiao API on http://{host}:{port}/api/v1 "
               f"(OpenAPI: http://{host}:{port}/api/v1/openapi.json)", err=True)
    waitress.serve(flask, host=host, port=port, threads=threads, ident="fenxiao")


@main.command()
def worker() -> None:
    """Run every projection until stopped (Ctrl-C)."""
    from projections import all_projections
    from projections.runner import ProjectionRunner

    runner = ProjectionRunner(_app(), all_projections())
    # Stop between batches on SIGTERM too (a batch is one transaction either way).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    click.echo("projection worker running; Ctrl-C stops it", err=True)
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--if-empty", is_flag=True, help="Do nothing (and succeed) if data exists.")
def demo(if_empty: bool) -> None:
    """Load demo data into an empty database."""
    from api.demo import load_demo

    app = _app()
    if app.last_position():
        if if_empty:
            click.echo("database already holds events; demo data not loaded", err=True)
            return
        raise click.ClickException("the database is not empty; demo data goes only into "
                                   "an empty database")
    click.echo(f"demo data loaded up to position {load_demo(app)}", err=True)


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--role", required=True,
              type=click.Choice(["admin", "operator", "warehouse", "distributor", "auditor",
                                 "integration"]))
@click.option("--distributor", "distributor_id", default=None,
              help="The distributor a distributor token is bound to.")
@click.option("--name", default=None, help="A unique name (default: role plus random).")
def token_create(role: str, distributor_id: str | None, name: str | None) -> None:
    """Create a token and print it alone on stdout (only its hash is stored)."""
    from api.auth import create_token
    from domain.errors import DomainError

    try:
        click.echo(create_token(_app().engine, role, name, distributor_id))
    except DomainError as error:
        raise click.ClickException(error.message) from None


@main.group()
def projections() -> None:
    """Read models."""


@projections.command("rebuild")
@click.argument("name", required=False)
def projections_rebuild(name: str | None) -> None:
    """Rebuild one projection (or all) from the event log, with progress."""
    from tqdm import tqdm

    from projections import all_projections
    from projections.runner import ProjectionRunner

    app = _app()
    runner = ProjectionRunner(app, all_projections())
    names = [name] if name else list(runner.projections)
    unknown = [n for n in names if n not in runner.projections]
    if unknown:
        raise click.ClickException(
            f"no projection named {unknown[0]}; one of {', '.join(runner.projections)}")
    head = app.last_position()
    for each in names:
        with tqdm(total=head, desc=each, unit="ev", file=sys.stderr) as bar:
            runner.rebuild(each, progress=bar.update)


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
