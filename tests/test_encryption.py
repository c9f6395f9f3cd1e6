"""With FENXIAO_CIPHER_KEY set, personal data in events is encrypted at rest (AES-GCM)."""
from __future__ import annotations

import base64
import os

import pytest

from commands import Fenxiao
from commands.settings import Settings
from domain.distributors import Distributor, PhoneClaim
from domain.errors import Duplicate


def test_phone_numbers_are_not_stored_in_clear(db_url: str) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    app = Fenxiao(Settings(database_url=db_url, cipher_key=key))
    try:
        app.execute(lambda: app.apply_distributor("Li Lei", "13812345678", None, "D1"))
        stored = app.recorder.select_events(Distributor.create_id("D1"))
        assert b"13812345678" not in stored[0].state and b"Li Lei" not in stored[0].state
        assert app.distributor("D1").phone == "+8613812345678"
        # the phone index is keyed by an HMAC, not by a reversible hash of the number
        assert not app.exists(PhoneClaim.create_id("+8613812345678"))
        assert app.exists(PhoneClaim.create_id(app._phone_key("13812345678")))
        with pytest.raises(Duplicate):
            app.execute(lambda: app.apply_distributor("Copy", "+86 138 1234 5678", None, "D2"))
    finally:
        app.close()
    plain = Fenxiao(Settings(database_url=db_url))
    try:
        stored = plain.recorder.select_events(Distributor.create_id("D1"))
        assert b"13812345678" not in stored[0].state  # still unreadable without the key
    finally:
        plain.close()
