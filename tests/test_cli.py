"""The `fenxiao` command line, in-process with click's runner."""
from __future__ import annotations

from click.testing import CliRunner

from api.cli import main


def invoke(url: str, *args: str):
    return CliRunner().invoke(main, list(args), env={"FENXIAO_DATABASE_URL": url})


def test_upgrade_demo_tokens_and_rebuild(sqlite_url: str) -> None:
    assert invoke(sqlite_url, "db", "upgrade").exit_code == 0
    assert invoke(sqlite_url, "db", "upgrade").exit_code == 0  # a no-op the second time
    assert invoke(sqlite_url, "demo").exit_code == 0
    again = invoke(sqlite_url, "demo")
    assert again.exit_code != 0 and "not empty" in again.output
    assert invoke(sqlite_url, "demo", "--if-empty").exit_code == 0
    token = invoke(sqlite_url, "token", "create", "--role", "auditor", "--name", "aud")
    assert token.exit_code == 0 and token.stdout.strip().startswith("fx_")
    assert len(token.stdout.strip().splitlines()) == 1
    same_name = invoke(sqlite_url, "token", "create", "--role", "auditor", "--name", "aud")
    assert same_name.exit_code != 0
    lonely = invoke(sqlite_url, "token", "create", "--role", "distributor")
    assert lonely.exit_code != 0 and "--distributor" in lonely.output
    bound = invoke(sqlite_url, "token", "create", "--role", "distributor",
                   "--distributor", "DEMO-D2")
    assert bound.exit_code == 0
    stranger = invoke(sqlite_url, "token", "create", "--role", "distributor",
                      "--distributor", "NOBODY")
    assert stranger.exit_code != 0 and "no distributor NOBODY" in stranger.output
    assert invoke(sqlite_url, "projections", "rebuild").exit_code == 0
    unknown = invoke(sqlite_url, "projections", "rebuild", "nope")
    assert unknown.exit_code != 0 and "inventory" in unknown.output


def test_a_setting_out_of_range_stops_every_command_and_names_it(sqlite_url: str) -> None:
    for env in ({"FENXIAO_DEMAND_HALF_LIFE_DAYS": "0"}, {"FENXIAO_RETURN_WINDOW_DAYS": "-1"},
                {"FENXIAO_LEAD_TIME_DAYS": "seven"}, {"FENXIAO_TOKEN_CACHE_S": "-1"},
                {"FENXIAO_TOKEN_CACHE_S": "301"}, {"FENXIAO_TOKEN_CACHE_S": "nan"}):
        result = CliRunner().invoke(main, ["db", "upgrade"],
                                    env={"FENXIAO_DATABASE_URL": sqlite_url, **env})
        assert result.exit_code == 1, result.output
        assert "bad setting" in result.output


def test_the_token_cache_setting_is_read_in_seconds(monkeypatch) -> None:
    from commands.settings import Settings

    assert Settings(database_url="x").token_cache_s == 5
    monkeypatch.setenv("FENXIAO_TOKEN_CACHE_S", "0.5")
    assert Settings.from_env().token_cache_s == 0.5
    monkeypatch.setenv("FENXIAO_TOKEN_CACHE_S", "0")  # off
    assert Settings.from_env().token_cache_s == 0


def test_several_api_processes_on_sqlite_are_refused_in_one_line(sqlite_url: str) -> None:
    result = invoke(sqlite_url, "serve", "--workers", "2")
    assert result.exit_code == 2  # a usage error: nothing started
    assert result.output.splitlines()[-1] == (
        "Error: --workers 2: SQLite serves from one process (one database file, one "
        "writer); use --workers 1, or PostgreSQL (FENXIAO_DATABASE_URL) for several")
    help_text = " ".join(invoke(sqlite_url, "serve", "--help").output.split())
    assert "SQLite serves from one process" in help_text and "needs PostgreSQL" in help_text
