"""One webhook delivery over HTTP: the Standard Webhooks signature, and a POST to an
address that was checked (the sender resolves and checks the URL's host first; the request
then goes to that very address, so a second lookup cannot answer differently), without
following redirects, within a connect and a total time-out, reading at most a few KiB of
the answer."""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import ssl
import time
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from domain.webhooks import SECRET_PREFIX

CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 15.0
MAX_RESPONSE_BYTES = 4096
ERROR_TEXT = 500  # characters of an error (or of a refusing answer) kept with an attempt


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` of "{id}.{timestamp}.{body}" (Standard Webhooks); the
    key is the base64 after `whsec_`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets: Sequence[str], message_id: str, timestamp: int,
                     body: bytes) -> str:
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    latency_ms: int


class Poster:
    """HTTP POSTs to one endpoint, over kept-alive connections to a checked address."""

    def __init__(self, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 total_timeout_s: float = TOTAL_TIMEOUT_S,
                 verify: ssl.SSLContext | bool = True) -> None:
        """`verify`: the certificates trusted (default: the usual authorities)."""
        self.total_timeout_s = total_timeout_s
        self._options = dict(
            follow_redirects=False, trust_env=False,  # no proxies from the environment
            timeout=httpx.Timeout(total_timeout_s, connect=connect_timeout_s),
            headers={"User-Agent": "Fenxiao-Webhooks/1"}, verify=verify)
        self.client = httpx.Client(**self._options)  # type: ignore[arg-type]
        # Connections are pooled by the address they go to: one made (and verified) for
        # a host name must never carry a request for another name at that address.
        self._host: str | None = None

    def close(self) -> None:
        self.client.close()

    def post(self, url: str, address: str, headers: dict[str, str], body: bytes) -> Outcome:
        """POST `body` to `url`, connecting to `address` (what its host resolved to and
        was checked); the Host header and TLS name stay the URL's own."""
        parts = urlsplit(url)
        ip = ipaddress.ip_address(address)
        netloc = f"[{ip}]" if ip.version == 6 else str(ip)
        if parts.port:
            netloc += f":{parts.port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host = parts.netloc.rpartition("@")[2]
        if parts.hostname != self._host:
            self.client.close()
            self.client = httpx.Client(**self._options)  # type: ignore[arg-type]
            self._host = parts.hostname
        started = time.monotonic()
        try:
            with self.client.stream(
                    "POST", target, content=body,
                    headers={**headers, "Host": host, "Content-Type": "application/json"},
                    extensions={"sni_hostname": parts.hostname or ""}) as response:
                self._read_some(response, started)
                ok = 200 <= response.status_code < 300
                error = None if ok else _answer_text(response)
                return Outcome(ok, response.status_code, error, _ms_since(started))
        except (httpx.HTTPError, OSError, TimeoutError) as failure:
            return Outcome(False, None, _describe(failure), _ms_since(started))

    def _read_some(self, response: httpx.Response, started: float) -> None:
        """At most MAX_RESPONSE_BYTES of the answer, within the total time-out."""
        read = bytearray()
        for chunk in response.iter_raw(1024):
            read += chunk
            if len(read) >= MAX_RESPONSE_BYTES:
                break
            if time.monotonic() - started > self.total_timeout_s:
                raise TimeoutError(f"no complete answer in {self.total_timeout_s:g} s")
        response._fenxiao_head = bytes(read[:ERROR_TEXT])  # type: ignore[attr-defined]


def _answer_text(response: httpx.Response) -> str:
    head = getattr(response, "_fenxiao_head", b"").decode("utf-8", "replace")
    return f"HTTP {response.status_code}" + (f": {head}" if head else "")


def _describe(failure: BaseException) -> str:
    text = str(failure) or type(failure).__name__
    return f"{type(failure).__name__}: {text}"[:ERROR_TEXT]


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
