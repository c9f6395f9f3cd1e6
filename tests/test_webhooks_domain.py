"""The webhook endpoint's rules, without a database: what each command records, what it
refuses (recording nothing), and which addresses may be called."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from domain.errors import InvalidCommand, InvalidTransition
from domain.webhooks import (BeyondLogHead, WebhookEndpoint, WebhookUrlRefused,
                             address_refusal, url_parts)
from projections.webhook_http import sign, signature_header

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
TYPES = ("order.paid", "order.placed")
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def endpoint(url: str = "https://hooks.example.com/x", allow_private: bool = False
             ) -> WebhookEndpoint:
    return WebhookEndpoint.register("wh_1", url, ["order.paid"], "ERP", SECRET, TYPES,
                                    allow_private, T0)


def new_events(aggregate: WebhookEndpoint) -> list[str]:
    return [type(e).__name__ for e in aggregate.collect_events()]


def test_registration_and_its_refusals() -> None:
    made = endpoint()
    assert (made.status, made.secret, made.types) == ("enabled", SECRET, ["order.paid"])
    assert new_events(made) == ["WebhookRegistered"]
    for url in ("ftp://h/x", "http:///x", "http://u:p@h/x", "http://h/x#f", "http://h:99999/",
                "https://" + "a" * 2000):
        with pytest.raises(WebhookUrlRefused):
            endpoint(url)
    for types, why in (([], "at least one"), (["order.nope"], "unknown"),
                       (["order.paid", "order.paid"], "twice")):
        with pytest.raises(InvalidCommand, match=why):
            WebhookEndpoint.register("wh_1", "https://h/x", types, "", SECRET, TYPES, False, T0)


@pytest.mark.parametrize("address, private_ok, refused", [
    ("127.0.0.1", False, "loopback"), ("169.254.169.254", False, "link-local"),
    ("10.1.2.3", False, "private"), ("192.168.0.1", False, "private"),
    ("100.64.0.1", False, "private or reserved"), ("::1", False, "loopback"),
    ("::ffff:127.0.0.1", False, "loopback"), ("fe80::1", False, "link-local"),
    ("0.0.0.0", True, "unspecified"), ("224.0.0.1", True, "multicast"),
    ("127.0.0.1", True, None), ("10.1.2.3", True, None), ("93.184.216.34", False, None),
    ("2606:2800:220:1::1", False, None),
])
def test_which_addresses_may_be_called(address: str, private_ok: bool,
                                       refused: str | None) -> None:
    why = address_refusal(address, private_ok)
    assert (why is None) == (refused is None), why
    if refused:
        assert refused in why
    # an address given in the URL itself is judged at registration
    host = f"[{address}]" if ":" in address else address
    if refused:
        with pytest.raises(WebhookUrlRefused):
            endpoint(f"http://{host}/x", private_ok)
    else:
        assert endpoint(f"http://{host}/x", private_ok).status == "enabled"


def test_disable_and_enable_each_only_from_the_other_state() -> None:
    made = endpoint()
    made.collect_events()
    with pytest.raises(InvalidTransition):
        made.enable(T0)
    assert new_events(made) == []
    with pytest.raises(InvalidCommand):
        made.disable("  ", False, T0)
    made.disable("maintenance", False, T0)
    assert (made.status, new_events(made)) == ("disabled", ["WebhookDisabled"])
    for refused in (lambda: made.disable("again", True, T0), lambda: made.ping(T0)):
        with pytest.raises(InvalidTransition):
            refused()
    assert new_events(made) == []
    made.enable(T0)
    made.ping(T0)
    assert (made.status, made.enables) == ("enabled", 1)
    assert new_events(made) == ["WebhookEnabled", "WebhookPinged"]


def test_rotation_signs_with_both_secrets_until_the_grace_ends() -> None:
    made = endpoint()
    with pytest.raises(InvalidCommand):
        made.rotate_secret("whsec_b3RoZXI=", 7 * 24 * 3600 + 1, T0)
    with pytest.raises(InvalidCommand):
        made.rotate_secret(SECRET, 60, T0)  # the same secret again
    made.rotate_secret("whsec_b3RoZXI=", 3600, T0)
    assert made.secrets_at(T0 + timedelta(seconds=3599)) == ["whsec_b3RoZXI=", SECRET]
    assert made.secrets_at(T0 + timedelta(seconds=3600)) == ["whsec_b3RoZXI="]
    assert (made.secret_of_version(2), made.secret_of_version(1)) == ("whsec_b3RoZXI=", SECRET)
    header = signature_header(made.secrets_at(T0), "msg_1", 1700000000, b"{}")
    assert header.split(" ") == [sign("whsec_b3RoZXI=", "msg_1", 1700000000, b"{}"),
                                 sign(SECRET, "msg_1", 1700000000, b"{}")]


def test_a_signature_is_the_standard_webhooks_one() -> None:
    """The example of the Standard Webhooks specification's reference libraries."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_replay_only_to_positions_the_log_has() -> None:
    made = endpoint()
    made.collect_events()
    with pytest.raises(BeyondLogHead):
        made.replay(11, 10, T0)
    with pytest.raises(InvalidCommand):
        made.replay(-1, 10, T0)
    assert new_events(made) == []
    made.replay(10, 10, T0)
    made.replay(0, 10, T0)
    assert (made.replays, made.replay_from) == (2, 0)


def test_url_parts() -> None:
    assert url_parts("https://h.example/x?y=1") == ("https", "h.example", 443)
    assert url_parts("http://[::1]:8080/") == ("http", "::1", 8080)


def test_https_goes_to_the_checked_address_and_verifies_the_urls_name(tmp_path) -> None:
    """The request connects to the address that was checked, yet TLS checks the
    certificate against the URL's own host name (as it would without the check)."""
    import ssl
    import threading
    from datetime import timedelta
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from projections.webhook_http import Poster

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(T0 - timedelta(days=3650))
            .not_valid_after(T0 + timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    trusted = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    poster = Poster(verify=trusted)
    try:
        sent = poster.post(f"https://hooks.test:{port}/x", "127.0.0.1", {}, b"{}")
        assert (sent.ok, sent.status_code) == (True, 200) and seen == [f"hooks.test:{port}"]
        wrong = poster.post(f"https://other.test:{port}/x", "127.0.0.1", {}, b"{}")
        assert not wrong.ok and wrong.status_code is None
        assert "certificate" in wrong.error.lower() or "hostname" in wrong.error.lower()
    finally:
        poster.close()
        server.shutdown()
        server.server_close()
