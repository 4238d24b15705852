"""Pure domain logic: cursors, live ordering, settings validation, token checks."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.auth.tokens import mint_user_token, verify_user_token
from service.domain.cursor import Cursor, InvalidCursorError
from service.domain.ordering import Verdict, judge
from service.errors import Unauthorized
from service.settings import ConfigError, Settings


@given(st.integers(1, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_cursor_round_trips(epoch: int, seq: int) -> None:
    cursor = Cursor(epoch, seq)
    text = cursor.encode()
    assert Cursor.decode(text) == cursor
    assert text.isascii() and "=" not in text


@given(st.text(max_size=80))
def test_any_text_either_decodes_canonically_or_is_rejected(text: str) -> None:
    try:
        cursor = Cursor.decode(text)
    except InvalidCursorError:
        return
    assert cursor.encode() == text


@pytest.mark.parametrize(
    "text",
    ["", "x" * 65, "!!!!", base64.urlsafe_b64encode(b"\x02" + b"\x00" * 12).decode().rstrip("="),
     Cursor(1, 1).encode() + "A", Cursor(1, 1).encode()[:-1], base64.urlsafe_b64encode(b"\x01" + b"\x00" * 12).decode().rstrip("=")],
)
def test_tampered_or_foreign_cursors_are_rejected(text: str) -> None:
    with pytest.raises(InvalidCursorError):
        Cursor.decode(text)


@pytest.mark.parametrize(
    ("last_sent", "seq", "verdict"),
    [(0, 1, Verdict.SEND), (4, 5, Verdict.SEND), (5, 5, Verdict.DROP), (5, 2, Verdict.DROP), (4, 6, Verdict.FILL), (0, 9, Verdict.FILL)],
)
def test_live_entries_are_sent_dropped_or_gap_filled(last_sent: int, seq: int, verdict: Verdict) -> None:
    assert judge(last_sent, seq) is verdict


def test_settings_defaults_and_values() -> None:
    settings = Settings.from_env({"TIDINGS_PORT": "9000", "TIDINGS_ROLE": "gateway", "TIDINGS_REDIS_URL": "redis://h:1/2",
                                   "TIDINGS_DATABASE_URL": "postgresql://u@h/db"})
    assert (settings.port, settings.role, settings.env) == (9000, "gateway", "prod")
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert settings.serves_gateway and not settings.serves_api
    assert settings.pubsub_url == "redis://h:1/2"
    assert Settings.from_env({}).database_url.startswith("sqlite+aiosqlite:///")


@pytest.mark.parametrize(
    ("name", "value"),
    [("TIDINGS_PORT", "eighty"), ("TIDINGS_PORT", "70000"), ("TIDINGS_ENV", "staging"), ("TIDINGS_ROLE", "both"),
     ("TIDINGS_DATABASE_URL", "mysql://x"), ("TIDINGS_REDIS_URL", "http://x"), ("TIDINGS_FANOUT_CHUNK", "501"),
     ("TIDINGS_PING_INTERVAL_S", "0"), ("TIDINGS_CHANNEL_PREFIX", "has space")],
)
def test_an_invalid_setting_fails_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_test_variables_are_ignored_by_the_service() -> None:
    assert Settings.from_env({"TIDINGS_TEST_REDIS_URL": "redis://x"}).redis_url is None


def test_missing_redis_and_credentials_are_explained() -> None:
    settings = Settings.from_env({})
    with pytest.raises(ConfigError, match="TIDINGS_REDIS_URL.*make run"):
        settings.require_redis("tidings serve")
    with pytest.raises(ConfigError, match="TIDINGS_JWT_SECRET"):
        settings.require_credentials()


def test_user_tokens() -> None:
    secret = "s" * 40
    principal = verify_user_token(mint_user_token(secret, "alice"), secret, "default")
    assert principal.user_id == "alice"
    for bad in ("", "a.b.c", mint_user_token("other" * 10, "alice"), mint_user_token(secret, "alice", -60),
                mint_user_token(secret, "bad user")):
        with pytest.raises(Unauthorized):
            verify_user_token(bad, secret, "default")


def test_json_depth_counts_objects_and_arrays_without_recursing() -> None:
    from service.domain.rules import json_depth

    assert json_depth(1) == 0
    assert json_depth({}) == 1
    assert json_depth({"a": [1, {"b": []}]}) == 4
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    assert json_depth(deep) == 5000


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /v1/stream?token=abc&cursor=x", "GET /v1/stream?token=[redacted]&cursor=x"),
        ("/v1/stream?%74oken=eyJ.x.y HTTP/1.1", "/v1/stream?%74oken=[redacted] HTTP/1.1"),
        ('"/v1/events?cursor=c&TOKEN=zz"', '"/v1/events?cursor=c&TOKEN=[redacted]"'),
        ("/v1/events?access_token=q", "/v1/events?access_token=[redacted]"),
        ("/v1/me/notifications?after=abc", "/v1/me/notifications?after=abc"),
    ],
)
def test_tokens_are_redacted_however_they_are_spelled(line: str, expected: str) -> None:
    from service.logs import redact

    assert redact(line) == expected


def test_every_error_names_itself() -> None:
    """A client error with the catch-all title reads as a bug ("Internal error") in every log."""
    from service.errors import TidingsError

    def all_subclasses(cls: type) -> list[type]:
        return [sub for direct in cls.__subclasses__() for sub in (direct, *all_subclasses(direct))]

    for cls in all_subclasses(TidingsError):
        if cls.status < 500:
            assert cls.title != TidingsError.title, cls
