"""Redis URLs whose password holds URL syntax (#, /, ?, @, %): read whole, never printed."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from redis.connection import parse_url

from stream_app.config.secret_urls import UrlError, mask_url, normalize_url
from stream_app.config.settings import Settings

PASSWORDS = ["S3c#ret", "Wr/ong?pw", "p@ss@wQrd", "50%off%zz", "a#b/c?d@e%f", "Pa55%23enc"]


def _substrings(secret: str, n: int = 4) -> set[str]:
    return {secret[i : i + n] for i in range(len(secret) - n + 1)}


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_raw_password_with_url_syntax_reaches_the_client_whole(password: str) -> None:
    url = f"redis://user:{password}@redis.example:6380/2"
    parsed = parse_url(normalize_url(url))  # what redis-py's from_url reads
    expected = password.replace("%23", "#")  # an escape is read as one (documented)
    assert (parsed["username"], parsed["password"]) == ("user", expected)
    assert (parsed["host"], parsed["port"], parsed["db"]) == ("redis.example", 6380, 2)


@pytest.mark.parametrize("password", PASSWORDS)
def test_config_output_holds_no_piece_of_the_password(password: str) -> None:
    s = Settings(_env_file=None, redis_url=SecretStr(f"redis://:{password}@127.0.0.1:6379/0"))  # type: ignore[call-arg]
    shown = repr(s.public_dump()) + repr(s) + str(s)
    assert not any(piece in shown for piece in _substrings(password)), shown
    assert s.public_dump()["redis_url"] == "redis://***@127.0.0.1:6379/0"


def test_query_credentials_and_urls_without_any_are_masked_or_kept() -> None:
    assert mask_url("rediss://redis.example:6380/0?password=x#y&ssl_cert_reqs=none") == (
        "rediss://redis.example:6380/0?password=***&ssl_cert_reqs=none"
    )
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert normalize_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_an_unreadable_url_is_refused_without_quoting_it() -> None:
    with pytest.raises(UrlError) as caught:
        normalize_url("S3c#ret-no-scheme")
    assert "S3c" not in str(caught.value)
    with pytest.raises(ValueError) as invalid:
        Settings(_env_file=None, redis_url=SecretStr("Wr0ng#secret"))  # type: ignore[call-arg]
    assert "Wr0" not in str(invalid.value)
