"""Application services: load aggregates, decide, save (one atomic save per command)."""

from commands.catalog import StockService


class Fenxiao(StockService):
    """The application: every service mixed into one event-sourced application."""

    name = "fenxiao"
