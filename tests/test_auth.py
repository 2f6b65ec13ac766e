"""Sign-in users from a file and the environment (llmint.auth)."""

from __future__ import annotations

import pytest

from llmint.auth import AuthConfigError, hash_password, load_users, one_time_users


def test_hash_round_trip_and_salting() -> None:
    h1, h2 = hash_password("s3cret", iterations=1000), hash_password("s3cret", iterations=1000)
    assert h1 != h2 and h1.startswith("pbkdf2_sha256$1000$")
    users = load_users(env={"LLMINT_USERS": f"ann:{h1}"})
    assert users.check("ann", "s3cret")
    assert not users.check("ann", "S3cret")
    assert not users.check("bob", "s3cret")
    assert not users.check("ann", "")


def test_file_and_env_later_entries_win(tmp_path) -> None:
    f = tmp_path / "users"
    f.write_text(f"# reviewers\nann:{hash_password('a', iterations=1000)}\n\nbob:plain-pw\n", encoding="utf-8")
    users = load_users(f, env={"LLMINT_USERS": "bob:new-pw, cy:c"})
    assert len(users) == 3
    assert users.check("ann", "a") and users.check("cy", "c")
    assert users.check("bob", "new-pw") and not users.check("bob", "plain-pw")
    assert load_users(env={"LLMINT_USERS_FILE": str(f)}).check("bob", "plain-pw")


@pytest.mark.parametrize("line", ["no-colon", ":pw", "ann:", "a b:pw", "ann:pbkdf2_sha256$x$y"])
def test_malformed_entries_are_clear_errors(tmp_path, line: str) -> None:
    f = tmp_path / "users"
    f.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(AuthConfigError, match=r"users:1"):
        load_users(f, env={})


def test_missing_file_and_nothing_configured(tmp_path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read"):
        load_users(tmp_path / "absent", env={})
    assert len(load_users(env={})) == 0  # no user is built in


def test_one_time_account() -> None:
    a, b = one_time_users(), one_time_users()
    assert a.one_time_password != b.one_time_password and len(a.one_time_password) >= 16
    assert a.check("admin", a.one_time_password) and not a.check("admin", b.one_time_password)
