"""The `fenxiao` command line."""
from __future__ import annotations

import logging
import signal
import sys

import click

from commands.settings import Settings


def _app(check_store: bool = True):  # imported lazily so `fenxiao --help` stays fast
    from commands import Fenxiao
    from commands.app import StoreMismatch

    app = Fenxiao(Settings.from_env())
    if check_store:  # a key that does not fit the store: refuse to start, say why
        try:
            app.check_store()
        except StoreMismatch as mismatch:
            app.close()
            raise click.ClickException(mismatch.message) from None
    return app


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
@click.option("--no-worker", is_flag=True,
              help="Do not run the projections, process managers and ticks in-process.")
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, no_worker: bool, threads: int) -> None:
    """Serve the HTTP API (waitress)."""
    import waitress

    from api import create_app
    from projections.runner import worker

    app = _app()
    flask = create_app(application=app)
    if not no_worker:  # projections, process managers and the time rules, in-process
        flask.extensions["fenxiao_runner"] = runner = worker(app)
        runner.start()
    click.echo(f"Fenxiao API on http://{host}:{port}/api/v1 "
               f"(OpenAPI: http://{host}:{port}/api/v1/openapi.json)", err=True)
    waitress.serve(flask, host=host, port=port, threads=threads, ident="fenxiao")


@main.command()
def worker() -> None:
    """Run every projection and process manager, and tick the time rules every minute,
    until stopped (Ctrl-C)."""
    from projections.runner import worker as full_worker

    runner = full_worker(_app())
    # Stop between batches on SIGTERM too (a batch is one transaction either way).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    click.echo("worker running (projections, process managers, a tick every minute); "
               "Ctrl-C stops it", err=True)
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--now", "now_text", default=None, metavar="ISO-8601",
              help="Run the rules as of this time (default: now); a time without an "
                   "offset is UTC. Never earlier than now: time only moves forward.")
def tick(now_text: str | None) -> None:
    """Run the time rules once: reservation expiry, completion after the return window,
    commission maturity after the freeze period. Prints what each did, as JSON."""
    import json
    from datetime import datetime, timezone

    from commands.tick import tick as run_tick
    from domain.errors import DomainError
    from projections.commissions import CommissionsProjection
    from projections.orders import OrdersProjection
    from projections.runner import ProjectionRunner

    now = None
    if now_text is not None:
        try:
            now = datetime.fromisoformat(now_text)
        except ValueError:
            raise click.BadParameter(f"{now_text!r} is not an ISO-8601 time",
                                     param_hint="--now") from None
        now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    app = _app()
    # The rules find what is due in these read models: bring them up to the log's head
    # first (safe beside a running worker: each batch moves a position only once).
    ProjectionRunner(app, [OrdersProjection(), CommissionsProjection()]).catch_up()
    try:
        result = run_tick(app, now, actor="cli")
    except DomainError as error:
        raise click.ClickException(error.message) from None
    click.echo(json.dumps(result))


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

    from domain.distributors import Distributor

    app = _app(check_store=False)  # tokens are not in the log: no cipher key needed
    if distributor_id is not None and not app.exists(Distributor.create_id(distributor_id)):
        raise click.ClickException(f"no distributor {distributor_id}: a distributor token "
                                   "is bound to an existing distributor")
    try:
        click.echo(create_token(app.engine, role, name, distributor_id))
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
    from projections.parking import parked_counts
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
    with app.engine.connect() as conn:
        counts = parked_counts(conn)
    for each in names:
        if counts.get(each):  # a bad event no longer stops a rebuild: say what was left out
            click.echo(f"{each}: {counts[each]} events parked (they could not be applied); "
                       "see `fenxiao projections parked`", err=True)


@projections.command("parked")
def projections_parked() -> None:
    """List parked events, one per line: projection, position, topic, parked at, error."""
    from projections.parking import list_parked

    with _app().engine.connect() as conn:
        rows = list_parked(conn)
    if not rows:
        click.echo("no parked events", err=True)
    for row in rows:
        error = " ".join(row.error.split())  # one line per event, whatever the message
        click.echo(f"{row.projection}\t{row.position}\t{row.topic}\t"
                   f"{row.parked_at.isoformat()}\t{error}")


@projections.command("retry")
@click.argument("name")
def projections_retry(name: str) -> None:
    """Re-apply NAME's parked events in log order (after a fix); each one that still fails
    stays parked with its new error."""
    from projections.runner import worker

    runner = worker(_app(), tick_interval_s=None)  # process managers' events too
    if name not in runner.names():
        raise click.ClickException(
            f"no projection named {name}; one of {', '.join(runner.names())}")
    applied, remaining = runner.retry_parked(name)
    click.echo(f"{name}: {applied} applied, {remaining} still parked")


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
