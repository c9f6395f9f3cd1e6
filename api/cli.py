"""The `fenxiao` command line."""
from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

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
    try:  # a setting out of range or not a number: say which, before anything starts
        Settings.from_env()
    except ValueError as bad:
        raise click.ClickException(f"bad setting: {bad}") from None


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
              help="Do not run the projections, process managers and ticks beside the API.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(min=1),
              help="Threads serving requests, in each API process.")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Run N API processes (gunicorn), and the projection worker as one "
                   "process of its own beside them. Without it: one process (waitress), "
                   "the worker a thread in it. SQLite serves from one process (one "
                   "database file, one writer): N above 1 needs PostgreSQL.")
def serve(host: str, port: int, no_worker: bool, threads: int, workers: int | None) -> None:
    """Serve the HTTP API: one process (waitress), or N processes (--workers, gunicorn)."""
    if workers is not None and workers > 1:
        _refuse_sqlite_processes(workers)
    _check_port_free(host, port)
    if workers is None:
        _serve_one_process(host, port, threads, with_worker=not no_worker)
    else:
        _serve_processes(host, port, workers, threads, with_worker=not no_worker)


def _serve_one_process(host: str, port: int, threads: int, with_worker: bool) -> None:
    import waitress

    from api import create_app
    from api.serving import freeze_startup_objects
    from api.access_log import configure_for_serving
    from api.server_errors import waitress_server
    from projections.runner import worker

    app = _app()
    flask = create_app(application=app)
    if with_worker:  # projections, process managers and the time rules, in-process
        flask.extensions["fenxiao_runner"] = runner = worker(app)
        runner.start()
        from projections.webhook_sender import WebhookSender  # and the webhooks' sender

        flask.extensions["fenxiao_webhooks"] = WebhookSender(app).start()
    _announce(host, port)
    configure_for_serving()
    freeze_startup_objects()
    waitress.serve(flask, host=host, port=port, threads=threads, ident="fenxiao",
                   _server=waitress_server)  # what waitress refuses itself, in our envelope


def _serve_processes(host: str, port: int, workers: int, threads: int,
                     with_worker: bool) -> None:
    from api import create_app
    from api.serving import serve as serve_with_gunicorn

    app = _app()  # refuse a store the key does not fit now, not in every process
    # One writer process for all of them (commands/writer_host.py), on PostgreSQL: on
    # SQLite, one process serves (and writes) anyway.
    shared_writer = app.engine.dialect.name == "postgresql" and bool(
        app.settings.writer_batch)
    app.close()
    _announce(host, port)
    serve_with_gunicorn(lambda: create_app(application=_app()), host, port, workers,
                        threads, with_worker, shared_writer)


def _announce(host: str, port: int) -> None:
    click.echo(f"Fenxiao API on http://{host}:{port}/api/v1 "
               f"(OpenAPI: http://{host}:{port}/api/v1/openapi.json)", err=True)


def _refuse_sqlite_processes(workers: int) -> None:
    from sqlalchemy.engine import make_url

    if make_url(Settings.from_env().database_url).get_backend_name() == "sqlite":
        raise click.UsageError(
            f"--workers {workers}: SQLite serves from one process (one database file, one "
            "writer); use --workers 1, or PostgreSQL (FENXIAO_DATABASE_URL) for several")


def _check_port_free(host: str, port: int) -> None:
    """One line, not a traceback, when the address cannot be listened on (the servers
    would bind it the same way: SO_REUSEADDR, every address the host resolves to)."""
    import errno
    import socket

    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise click.ClickException(f"cannot listen on {host}: {error.strerror}") from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise click.ClickException(
                        f"port {port} on {host} is taken: another server listens there; "
                        "stop it or choose another --port") from None
                raise click.ClickException(
                    f"cannot listen on {host}:{port}: {error.strerror}") from None


@main.command()
def worker() -> None:
    """Run every projection and process manager, and tick the time rules every minute,
    until stopped (Ctrl-C)."""
    from api.serving import freeze_startup_objects
    from projections.runner import worker as full_worker

    app = _app()
    if app.settings.writer_batch:  # the process managers' and the tick's commands too
        app.start_writer(max_batch=app.settings.writer_batch)
    runner = full_worker(app)
    from projections.webhook_sender import WebhookSender

    sender = WebhookSender(app).start()  # each webhook endpoint's deliveries
    # Stop between batches on SIGTERM too (a batch is one transaction either way).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    click.echo("worker running (projections, process managers, a tick every minute, "
               "webhooks); Ctrl-C stops it", err=True)
    freeze_startup_objects()
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sender.stop()


@main.command(hidden=True)
def writer() -> None:
    """The one writer of `serve --workers N` (started by it; its API processes send their
    commands here: commands/writer_host.py). Reads the socket and key from the
    environment the server sets."""
    from api.serving import freeze_startup_objects
    from commands.writer_host import ADDRESS_ENV, KEY_ENV, WriterHost

    address, key = os.environ.get(ADDRESS_ENV), os.environ.get(KEY_ENV)
    if not address or not key:
        raise click.ClickException(f"{ADDRESS_ENV} and {KEY_ENV} must be set (by serve)")
    app = _app()
    host = WriterHost(app, address, bytes.fromhex(key),
                      max_batch=app.settings.writer_batch or 1)
    signal.signal(signal.SIGTERM, lambda *_: host.close())
    freeze_startup_objects()
    try:
        host.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.close()  # after the batch in hand is answered


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
@click.option("--expires-in", "expires_in_days", default=None, metavar="DAYS",
              type=click.IntRange(min=1, max=36_500),
              help="Refuse the token this many days from now (default: never).")
def token_create(role: str, distributor_id: str | None, name: str | None,
                 expires_in_days: int | None) -> None:
    """Create a token and print it alone on stdout (only its hash is stored)."""
    from api.auth import create_token
    from domain.errors import DomainError

    from domain.distributors import Distributor

    app = _app(check_store=False)  # tokens are not in the log: no cipher key needed
    if distributor_id is not None and not app.exists(Distributor.create_id(distributor_id)):
        raise click.ClickException(f"no distributor {distributor_id}: a distributor token "
                                   "is bound to an existing distributor")
    try:
        click.echo(create_token(app.engine, role, name, distributor_id, expires_in_days,
                                now=app.clock()))
    except DomainError as error:
        raise click.ClickException(error.message) from None


@token.command("list")
@click.option("--all", "include_unusable", is_flag=True,
              help="Also list revoked and expired tokens.")
def token_list(include_unusable: bool) -> None:
    """List tokens, one a line: name, role, distributor, created, expires, last used,
    revoked (times in UTC; last used is up to a minute behind). Never a token or its hash."""
    from api.auth import list_tokens

    app = _app(check_store=False)
    try:
        now = app.clock()
        tokens = list_tokens(app.engine, include_unusable, now=now)
    finally:
        app.close()
    if app.settings.admin_token:
        click.echo("FENXIAO_ADMIN_TOKEN is set: it is an admin token too (env-admin), not "
                   "stored here, and revoked only by changing it", err=True)
    if not tokens:
        click.echo("no tokens" if include_unusable
                   else "no usable tokens (--all lists revoked and expired ones)", err=True)
        return
    lines = [["NAME", "ROLE", "DISTRIBUTOR", "CREATED", "EXPIRES", "LAST USED", "REVOKED"]]
    for row in tokens:
        expires = _minute(row["expires_at"], "never")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            expires += " (expired)"
        lines.append([row["name"], row["role"], row["distributor_id"] or "-",
                      _minute(row["created_at"], "-"), expires,
                      _minute(row["last_used_at"], "never"), _minute(row["revoked_at"], "-")])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _minute(at: Any, absent: str) -> str:
    return at.strftime("%Y-%m-%d %H:%MZ") if at is not None else absent


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke the token NAME (as `token list` shows it). API processes that used it in
    the last FENXIAO_TOKEN_CACHE_S seconds (default 5) may accept it until then; the
    console refuses it at once. FENXIAO_ADMIN_TOKEN (env-admin) cannot be revoked here:
    change or unset it and restart."""
    from api.auth import ENV_ADMIN, revoke_token
    from domain.errors import NotFound

    app = _app(check_store=False)
    try:
        before = revoke_token(app.engine, name, now=app.clock())
    except NotFound as error:
        if name == ENV_ADMIN:
            raise click.ClickException(
                f"{ENV_ADMIN} is FENXIAO_ADMIN_TOKEN, which is not stored: it cannot be "
                "revoked; change or unset FENXIAO_ADMIN_TOKEN and restart the API") from None
        raise click.ClickException(f"{error.message} (see `fenxiao token list --all`)"
                                   ) from None
    finally:
        app.close()
    if before is not None:
        click.echo(f"token {name} was already revoked at {_minute(before, '')}", err=True)
        return
    click.echo(f"token {name} revoked; API processes may still accept it for up to "
               f"{app.settings.token_cache_s:g} s (FENXIAO_TOKEN_CACHE_S)", err=True)


@main.group()
def projections() -> None:
    """Read models."""


@projections.command("rebuild")
@click.argument("name", required=False)
def projections_rebuild(name: str | None) -> None:
    """Rebuild one projection (or all) from the event log, with progress: each is built
    aside and swapped in at once, so readers never see it half built."""
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


@main.group()
def audit() -> None:
    """Audit: prove the books and the read models from the log alone."""


@audit.command("as-of")
@click.argument("position", type=click.IntRange(min=0))
@click.option("--view", required=True, help="The read model: a projection's name.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]),
              default="table", show_default=True)
@click.option("--table", "table_name", default=None,
              help="Only this table of the view (csv needs one when the view has several).")
@click.option("--output", type=click.File("w", encoding="utf-8", lazy=True), default="-",
              help="Write here instead of stdout.")
def audit_as_of(position: int, view: str, fmt: str, table_name: str | None,
                output: Any) -> None:
    """Build the read model VIEW from the log up to POSITION in scratch tables (the live
    ones are not touched; the scratch ones are dropped after) and print its tables."""
    from commands.exports import write_tables
    from projections import all_projections
    from projections.scratch import as_of

    app = _app()
    found = {p.name: p for p in all_projections()}
    if view not in found:
        raise click.ClickException(f"no view named {view}; one of {', '.join(found)}")
    tables = list(found[view].tables)
    if table_name is not None:
        tables = [t for t in tables if t.name == table_name]
        if not tables:
            raise click.ClickException(
                f"view {view} has no table {table_name}; its tables: "
                f"{', '.join(t.name for t in found[view].tables)}")
    if fmt == "csv" and len(tables) > 1:
        raise click.ClickException(f"view {view} has several tables; choose one with "
                                   f"--table ({', '.join(t.name for t in tables)})")
    head = app.last_position()
    if position > head:
        raise click.ClickException(f"position {position} is beyond the log head {head}")
    with click.progressbar(length=max(position, 1), label=f"{view} as of {position}",
                           file=sys.stderr) as bar:
        rows = as_of(app, found[view], position, progress=bar.update)
    write_tables(tables, rows, fmt, output, view=view, position=position)


@audit.command("check")
def audit_check() -> None:
    """Rebuild every projection from the log in scratch tables, each up to the position
    its live tables are at, and compare them row by row; name every difference and exit
    with status 1 if there is any."""
    from projections import all_projections
    from projections.scratch import compare_with_rebuild, live_snapshot

    app = _app()
    differences = []
    for projection in all_projections():
        position, live_rows = live_snapshot(app, projection)
        with click.progressbar(length=max(position, 1), label=projection.name,
                               file=sys.stderr) as bar:
            differences += compare_with_rebuild(app, projection, position, live_rows,
                                                progress=bar.update)
    shown: dict[tuple[str, str], int] = {}
    for difference in differences:
        where = (difference.projection, difference.table)
        shown[where] = shown.get(where, 0) + 1
        if shown[where] <= AUDIT_CHECK_SHOWN:
            click.echo(difference.describe())
    for (name, table), count in shown.items():
        if count > AUDIT_CHECK_SHOWN:
            click.echo(f"{name}: {table}: {count - AUDIT_CHECK_SHOWN} more differences")
    if differences:
        click.echo(f"{len(differences)} rows differ from a rebuild from the log", err=True)
        sys.exit(1)
    click.echo(f"every projection equals its rebuild from the log "
               f"({len(all_projections())} projections)")


AUDIT_CHECK_SHOWN = 20  # differences listed per table; the rest are counted


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the HMAC chain over the event log (key: FENXIAO_SEAL_KEY) and print a
    JSON summary. Exit status 0: intact; 1: a position was altered, inserted or deleted,
    or a seal forged (the summary names it); 2: it cannot be checked (the key is unset or
    too short)."""
    import json

    from projections.seal import exit_status, verify

    app = _app(check_store=False)  # the chain covers the bytes as stored: no cipher key
    try:
        report = verify(app)
    finally:
        app.close()
    click.echo(json.dumps(report))
    sys.exit(exit_status(report))


@audit.command("seal")
def audit_seal() -> None:
    """Seal the events not sealed yet, now (the worker does it continuously)."""
    from projections.seal import SealKeyError, SealStateError, seal_pending

    app = _app(check_store=False)
    try:
        if not app.settings.seal_key:
            raise click.ClickException("FENXIAO_SEAL_KEY is not set: sealing is disabled")
        sealed = seal_pending(app)
    except (SealKeyError, SealStateError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        app.close()
    click.echo(f"{sealed} events sealed", err=True)


@main.group()
def export() -> None:
    """Exports for auditors, as CSV: live, or as of a log position or time."""


def _export_options(command: Any) -> Any:
    options = [
        click.option("--as-of", "as_of", default=None, metavar="POSITION|ISO-8601",
                     help="As of this log position, or time (the last position at or "
                          "before it; without an offset: UTC), built from the log."),
        click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv",
                     show_default=True),
        click.option("--output", type=click.File("w", encoding="utf-8", lazy=True),
                     default="-", help="Write here instead of stdout."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _distributor_option(command: Any) -> Any:
    return click.option("--distributor", "distributor_id", default=None,
                        help="Only what concerns this distributor.")(command)


@export.command("journal")
@_export_options
@_distributor_option
def export_journal(**options: Any) -> None:
    """Every journal line in log order (with --distributor: the entries touching it)."""
    _export("journal", **options)


@export.command("trial-balance")
@_export_options
def export_trial_balance(**options: Any) -> None:
    """Each account's debits, credits and balance, and a TOTAL row (balance 0)."""
    _export("trial-balance", **options)


@export.command("statements")
@_export_options
@_distributor_option
def export_statements(**options: Any) -> None:
    """Each distributor's entries with running balances and what is behind each one."""
    _export("statements", **options)


def _export(kind: str, as_of: str | None, fmt: str, output: Any,
            distributor_id: str | None = None) -> None:
    from commands.exports import (check_distributor, parse_as_of, projections_for,
                                  resolve_as_of, write_csv)
    from domain.errors import DomainError
    from projections.runner import ProjectionRunner

    app = _app()
    try:
        if distributor_id is not None:
            check_distributor(app, distributor_id)
        position = None if as_of is None else resolve_as_of(app, parse_as_of(as_of))
        needed = projections_for(kind)
        if position is None:  # the live read models, brought up to the log's head
            ProjectionRunner(app, needed).catch_up()
            found, position = _export_rows(app, kind, None, distributor_id, None)
        else:
            with click.progressbar(length=max(position * len(needed), 1),
                                   label=f"{kind} as of {position}", file=sys.stderr) as bar:
                found, position = _export_rows(app, kind, position, distributor_id,
                                               bar.update)
    except DomainError as error:
        raise click.ClickException(error.message) from None
    write_csv(kind, found, output)
    click.echo(f"{kind}: {len(found)} rows as of position {position}", err=True)


def _export_rows(app: Any, kind: str, as_of: int | None, distributor_id: str | None,
                 progress: Any) -> tuple[list[dict[str, Any]], int]:
    from commands.exports import books, rows

    with books(app, kind, as_of, progress) as source:
        return rows(source, kind, distributor_id), source.position


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
