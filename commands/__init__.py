"""Application services: load aggregates, decide, save (one atomic save per command)."""

from commands.catalog import StockService
from commands.ledger import LedgerService


class Fenxiao(StockService, LedgerService):
    """The application: every service mixed into one event-sourced application."""

    name = "fenxiao"
