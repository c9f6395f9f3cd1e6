"""Console actions: a form in a console page runs the very command value the JSON API runs,
through the same path (api/http.py `execute_command`: the writer or the writer link, the
idempotency store), as the signed-in token, and answers POST-redirect-GET.

How to add an action (a view on the console blueprint):

    from api import aftersales as aftersales_api
    from api.console import blp
    from api.console_forms import act, console_action, form_text

    @blp.post("/aftersales/<case_id>/approve")
    @console_action(aftersales_api.approve)   # the API view: its roles, nobody else's
    def case_approve(principal, case_id):
        return act(ApproveCase(case_id, form_text("reason")),
                   url_for(".aftersales"), gettext("Case %(id)s approved.", id=case_id))

and in its page, a form that posts there:

    <form method="post" action="{{ url_for('console.case_approve', case_id=c.case_id) }}">
      {{ form_fields() }}<button type="submit">{{ _("Approve") }}</button></form>

wrapped in `{% if may('case_approve') %}` so that roles which may not act (auditors,
always) see no button.

The pieces:

- `console_action(allowed)`: decorates a POST view. `allowed` is the API view whose route
  the action mirrors (its `@requires` roles are read from it) or that tuple of roles
  itself. Not signed in: 303 to the sign-in page. A form without the session's CSRF
  token, or sent from another origin: 403. A distributor naming another's object in the
  path: 404, as the API answers (name the path parameters as the API route does —
  `distributor_id`, `case_id`, `purchase_order_id`… — so api/auth.py's owners apply).
  A role the API route refuses: 403. No role that may read only (auditor) is ever
  allowed. In each case nothing runs. The view gets the principal, like a page's.
- `act(command, done_url, success_message) -> Response`: runs `command` (a
  commands.messages Command) as `g.principal.name` with the form's idempotency key
  ("console:" + the key the form was rendered with; the store is per token name), then
  flashes `success_message` (a string, or a function of the Reply) and answers 303 to
  `done_url` (with `?min_position=` the command's position: the page waits for its read
  models to show what was done, as the API's queries do). A refusal (DomainError,
  ApiError) flashes its message and its stable code and answers 303 back to the page the
  form was on (its `back` field), having recorded nothing. The same form sent twice (a
  double click, a reload) runs once: the second gets the first's answer from the
  idempotency store.
- `confirm_then_act(command, done_url, success_message, title=, facts=, consequence=)`:
  for what moves money. The first POST renders a confirmation page (what will happen,
  the amounts) whose form carries every field of the first, the same idempotency key
  included; only its submit acts.
- `form_fields()` (in every console template): the hidden fields every action form
  carries: `csrf` (the session's token), `idempotency_key` (a fresh random key, made when
  the page is rendered: `form_key()`), `back` (this page). `may(endpoint)`: whether the
  signed-in role may run that action.
- Reading the form: `form_text(name)`, `form_bool(name)`, `form_yuan(name)` (yuan typed
  by a person -> integer fen, exactly, with Decimal), `filled(**fields)` (the fields given,
  as an API body would hold them) and `load_form(schema, data)` (the API's own
  marshmallow schema). What they refuse raises `FormError` (422 validation_error),
  answered like a refusal: 303 back with the messages shown.
- Not a command (e.g. `fenxiao projections retry`): call the same service the command line
  calls inside a `console_action` view, then `flash(message, "success")` and 303; such an
  action must be idempotent by itself, as the idempotency store is not in its path.
"""
from __future__ import annotations

import functools
import re
import secrets
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Response, flash, g, redirect, request, session, url_for
from flask_babel import gettext
from markupsafe import Markup
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import BadRequest, Forbidden

from api import console_i18n as i18n
from api.auth import _hide_others
from api.console import _check_form, _safe_next, blp, render
from api.errors import ApiError
from api.http import execute_command
from commands.app import Reply
from commands.messages import Command
from commands.writer_host import WriterUnavailable
from domain.errors import DomainError

KEY_PREFIX = "console:"  # the console's keys, apart from those API clients choose
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")
READ_ONLY_ROLES = ("auditor",)
# endpoint (without "console.") -> the roles that may run it; `may` reads it
ACTIONS: dict[str, tuple[str, ...]] = {}
Message = str | Callable[[Reply], str]


class FormError(ApiError):
    """A form field the console refuses before anything runs: shown like a refusal."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(422, "validation_error", message, **fields)


# -- the hidden fields of every action form -----------------------------------------------

def form_key() -> str:
    """A fresh idempotency key: one per rendered form."""
    return secrets.token_urlsafe(18)


def form_fields(key: str | None = None) -> Markup:
    """csrf, idempotency_key and back, as hidden inputs."""
    hidden = Markup('<input type="hidden" name="{}" value="{}">')
    back = request.full_path.rstrip("?") if request.method == "GET" else (
        _safe_next(request.form.get("back")) or "")
    return Markup("").join(hidden.format(name, value) for name, value in (
        ("csrf", session.get("csrf", "")), ("idempotency_key", key or form_key()),
        ("back", back)))


def may(endpoint: str) -> bool:
    """Whether the signed-in principal may run the action `endpoint`."""
    principal = g.get("principal")
    roles = ACTIONS.get(endpoint.rpartition(".")[2], ())
    return principal is not None and principal.role in roles


@blp.context_processor
def _form_helpers() -> dict[str, Any]:
    acting = {role for roles in ACTIONS.values() for role in roles}
    return {"form_fields": form_fields, "form_key": form_key, "may": may,
            "acting_roles": acting}


# -- guarding an action -------------------------------------------------------------------

def roles_of(allowed: Callable[..., Any] | Sequence[str]) -> tuple[str, ...]:
    """The roles of an API view (what its `@requires` says), or the roles given."""
    roles = tuple(getattr(allowed, "roles", allowed))
    if not roles or not all(isinstance(role, str) for role in roles):
        raise TypeError(f"no roles in {allowed!r}")
    if set(roles) & set(READ_ONLY_ROLES):
        raise ValueError(f"{', '.join(READ_ONLY_ROLES)} only read; no action is theirs")
    return roles


def console_action(allowed: Callable[..., Any] | Sequence[str]
                   ) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Signed in (else to the sign-in page), the form is ours (else 403), the role may
    (else 403): then the view runs, with the principal."""
    roles = roles_of(allowed)

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        ACTIONS[view.__name__] = roles

        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> Response:
            principal = g.principal
            if principal is None:
                return redirect(url_for(".signin"), 303)
            _check_form()
            if principal.role == "distributor":  # as `requires` does: another's is 404
                _hide_others(principal, kwargs)
            if principal.role not in roles:
                raise Forbidden(gettext(
                    "A token of the role %(role)s may not do this; it needs one of "
                    "%(roles)s.", role=i18n.word(i18n.ROLES, principal.role),
                    roles=", ".join(i18n.word(i18n.ROLES, role) for role in roles)))
            g.console_action = True
            return view(principal, **kwargs)
        return wrapper
    return decorate


# -- running it ---------------------------------------------------------------------------

def sent_key() -> str:
    """The form's idempotency key, namespaced for the store."""
    key = request.form.get("idempotency_key", "")
    if not KEY_PATTERN.fullmatch(key):
        raise BadRequest(gettext("The form is incomplete; reload the page and try again."))
    return KEY_PREFIX + key


def back_url(default: str) -> str:
    """The page the form was on (a console path of ours), else `default`."""
    return _safe_next(request.form.get("back")) or default


def act(command: Command, done_url: str, success_message: Message) -> Response:
    """Run `command` as the signed-in token with the form's key; then 303 to `done_url`
    with the success message, or back to the form's page with the refusal."""
    if not g.get("console_action"):
        raise AssertionError("act() runs only in a view decorated with console_action")
    key = sent_key()
    try:
        reply = execute_command(command, g.principal.name, key)
    except (DomainError, ApiError, WriterUnavailable) as error:
        return refused(error, back_url(done_url))
    message = success_message(reply) if callable(success_message) else success_message
    flash(message, "success")
    return redirect(at_position(done_url, reply.body.get("position")), 303)


def at_position(url: str, position: Any) -> str:
    """`url` asking its page to wait until the read models show the command's events
    (the API's read-your-writes, `?min_position=`), so the page shows what was done."""
    if not isinstance(position, int) or isinstance(position, bool):
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in ("min_position", "cursor")]
    return urlunsplit(parts._replace(query=urlencode([*query, ("min_position", position)])))


def refused(error: DomainError | ApiError | WriterUnavailable, to: str) -> Response:
    """Flash the refusal in words (its message, its stable code and, for a form that was
    not valid, each field's messages), then 303 to `to`."""
    if isinstance(error, DomainError):
        body = error.envelope()["error"]  # what the API answers, fields as a 422 names them
        code, message, details = body["code"], body["message"], body["details"]
    elif isinstance(error, ApiError):
        code, message, details = error.code, error.message, error.details
    else:
        code, message, details = error.code, str(error), {}
    fields = {}
    if getattr(error, "status", None) == 422:
        fields = {str(name): [str(m) for m in (v if isinstance(v, list) else [v])]
                  for name, v in details.items()}
    flash({"code": code, "message": message, "fields": fields}, "error")
    return redirect(to, 303)


@blp.errorhandler(FormError)
def _form_error(error: FormError) -> Response:
    referrer = urlsplit(request.referrer or "")
    page = _safe_next(urlunsplit(("", "", referrer.path, referrer.query, "")))
    return refused(error, back_url(page or url_for(".home")))


def confirm_then_act(command: Command, done_url: str, success_message: Message, *,
                     title: str, facts: Iterable[tuple[str, str]], consequence: str
                     ) -> Response:
    """First POST: the confirmation page (the same fields, the same key, `confirmed`).
    Its submit: `act`."""
    if request.form.get("confirmed") == "1":
        return act(command, done_url, success_message)
    sent_key()  # a form without a key is refused now, not after confirming
    carried = [(name, value) for name, value in request.form.items(multi=True)
               if name not in ("csrf", "confirmed")]
    return render("confirm.html", title=title, facts=list(facts), consequence=consequence,
                  carried=carried, action=request.path, cancel=back_url(done_url))


# -- reading the form ----------------------------------------------------------------------

def form_text(name: str) -> str | None:
    """A field's text, stripped; None when empty or absent."""
    value = request.form.get(name, "").strip()
    return value or None


def form_bool(name: str) -> bool:
    """A yes/no field (a select or radio of "yes"/"no", or a checkbox); absent is no."""
    value = request.form.get(name, "no")
    if value not in ("yes", "no", "on"):
        raise FormError(gettext("choose yes or no"), **{name: [gettext("yes or no")]})
    return value in ("yes", "on")


def filled(**fields: Any) -> dict[str, Any]:
    """The fields that were filled in: an empty one is absent, as in the API's body."""
    return {k: v for k, v in fields.items() if v is not None}



YUAN = re.compile(r"(\d{1,3}(,\d{3})+|\d+)(\.\d{1,2})?")


def parse_yuan(text: str) -> int:
    """Yuan as a person types them ("1,234.5", "12") -> fen, exactly; ValueError for
    anything else (a sign, more than two decimals, an exponent, not a number)."""
    text = text.strip()
    if not YUAN.fullmatch(text):
        raise ValueError(text)
    try:
        fen = Decimal(text.replace(",", "")) * 100
    except InvalidOperation:
        raise ValueError(text) from None
    if fen != fen.to_integral_value():
        raise ValueError(text)
    return int(fen)


def form_yuan(name: str) -> int:
    """The field `name`, an amount in yuan, as integer fen."""
    text = request.form.get(name, "")
    try:
        return parse_yuan(text)
    except ValueError:
        message = gettext("an amount in yuan, such as 12.50 (at most two decimals)")
        raise FormError(gettext("the amount is not valid"), **{name: [message]}) from None


def load_form(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    """`data` (built from the form) through the API's own schema; FormError if refused."""
    try:
        return schema.load(data)
    except ValidationError as error:
        messages = error.messages if isinstance(error.messages, dict) else \
            {"_form": error.messages}
        raise FormError(gettext("the form is not valid; see below"), **messages) from None
