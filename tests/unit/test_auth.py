"""raydesk.auth: tokens, the admin check, password hashes and the secrets file."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import jwt
import pytest

from raydesk import auth
from raydesk.auth import (
    Principal,
    Tokens,
    hash_password,
    load_or_create_secrets,
    verify_password,
)
from raydesk.errors import Forbidden, Unauthorized

KEY = "signing-key-for-unit-tests-0123456789"
ADMIN = "admin-token-for-unit-tests-0123456789"


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(KEY, ADMIN)


# --- tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["customer", "agent", "admin"])
def test_issue_verify_round_trip(tokens: Tokens, role: str) -> None:
    """A token issued for a principal verifies back to the same principal."""
    principal = Principal(id="p-1", role=role)  # type: ignore[arg-type]
    assert tokens.verify(tokens.issue(principal, ttl_s=60)) == principal


def test_principal_roles() -> None:
    """Agents and admins are agents on the wire; visitors are customers."""
    assert Principal("v", "customer").wire_role == "customer"
    assert not Principal("v", "customer").is_agent
    assert Principal("a", "agent").wire_role == "agent"
    assert Principal("b", "admin").is_agent and Principal("b", "admin").wire_role == "agent"


def test_token_carries_expiry(tokens: Tokens) -> None:
    """The token's exp is issue time plus the ttl."""
    before = int(time.time())
    claims = jwt.decode(tokens.issue(Principal("v", "customer"), 600), KEY,
                        algorithms=["HS256"])
    assert before + 600 <= claims["exp"] <= int(time.time()) + 600


def test_expired_token_is_unauthorized(tokens: Tokens) -> None:
    """A token past its exp is refused with Unauthorized saying it expired."""
    token = tokens.issue(Principal("v", "customer"), ttl_s=-5)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token)


def test_token_issued_longer_ago_than_its_ttl_is_expired(
        tokens: Tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 60 s token issued 120 s ago is refused; one issued 30 s ago still passes."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 120)
    old = tokens.issue(Principal("v", "customer"), ttl_s=60)
    monkeypatch.setattr(time, "time", lambda: real() - 30)
    recent = tokens.issue(Principal("v", "customer"), ttl_s=60)
    monkeypatch.setattr(time, "time", real)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(old)
    assert tokens.verify(recent) == Principal("v", "customer")


def test_tampered_token_is_unauthorized(tokens: Tokens) -> None:
    """Changing the payload (e.g. the role) breaks the signature: Unauthorized."""
    token = tokens.issue(Principal("v", "customer"), ttl_s=60)
    header, payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps(
        {"sub": "v", "role": "admin", "exp": int(time.time()) + 60}).encode()).decode()
    with pytest.raises(Unauthorized):
        tokens.verify(f"{header}.{forged_payload}.{signature}")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    with pytest.raises(Unauthorized):
        tokens.verify(f"{header}.{payload}.{flipped}")


def test_token_from_another_key_is_unauthorized(tokens: Tokens) -> None:
    """A token signed with another server's key is refused."""
    other = Tokens("another-signing-key-9876543210abcdef", ADMIN)
    with pytest.raises(Unauthorized):
        tokens.verify(other.issue(Principal("v", "customer"), ttl_s=60))


@pytest.mark.parametrize("claims", [
    {"sub": "v", "role": "root"},
    {"sub": "v"},
    {"role": "agent"},
    {"sub": "v", "role": None},
])
def test_token_with_bad_claims_is_unauthorized(tokens: Tokens, claims: dict[str, object]) -> None:
    """A correctly signed token with a missing or unknown role or subject is refused."""
    token = jwt.encode({**claims, "exp": int(time.time()) + 60}, KEY, algorithm="HS256")
    with pytest.raises(Unauthorized):
        tokens.verify(token)


def test_token_without_expiry_is_unauthorized(tokens: Tokens) -> None:
    """A token without exp is refused (tokens must expire)."""
    token = jwt.encode({"sub": "v", "role": "admin"}, KEY, algorithm="HS256")
    with pytest.raises(Unauthorized):
        tokens.verify(token)


def test_unsigned_token_is_unauthorized(tokens: Tokens) -> None:
    """An 'alg: none' token is refused."""
    token = jwt.encode({"sub": "v", "role": "admin", "exp": int(time.time()) + 60},
                       None,  # type: ignore[arg-type]
                       algorithm="none")
    with pytest.raises(Unauthorized):
        tokens.verify(token)


@pytest.mark.parametrize("garbage", ["", "x", "a.b.c", "not a token at all"])
def test_garbage_token_is_unauthorized(tokens: Tokens, garbage: str) -> None:
    """Anything that is not a token is Unauthorized, never another exception."""
    with pytest.raises(Unauthorized):
        tokens.verify(garbage)


# --- require_admin ---------------------------------------------------------------------


def test_require_admin_accepts_the_admin_token(tokens: Tokens) -> None:
    """The configured admin token passes."""
    tokens.require_admin(ADMIN)
    assert tokens.is_admin_token(ADMIN)
    assert not tokens.is_admin_token(ADMIN + "x")


def test_require_admin_accepts_an_admin_role_agent(tokens: Tokens) -> None:
    """An agent token with the admin role passes."""
    tokens.require_admin(tokens.issue(Principal("a1", "admin"), 60))


@pytest.mark.parametrize("role", ["agent", "customer"])
def test_require_admin_refuses_other_roles(tokens: Tokens, role: str) -> None:
    """An agent's or visitor's valid token is Forbidden."""
    with pytest.raises(Forbidden):
        tokens.require_admin(tokens.issue(Principal("p", role), 60))  # type: ignore[arg-type]


@pytest.mark.parametrize("missing", [None, ""])
def test_require_admin_without_token_is_unauthorized(tokens: Tokens,
                                                     missing: str | None) -> None:
    """No token at all is Unauthorized."""
    with pytest.raises(Unauthorized):
        tokens.require_admin(missing)


def test_require_admin_with_a_wrong_token_is_unauthorized(tokens: Tokens) -> None:
    """A token that is neither the admin token nor a valid JWT is Unauthorized."""
    with pytest.raises(Unauthorized):
        tokens.require_admin("admin-token-guess")


# --- passwords -------------------------------------------------------------------------


def test_password_hash_verifies() -> None:
    """A hash verifies its password and refuses any other."""
    hashed = hash_password("correct horse")
    assert hashed != "correct horse"
    assert verify_password(hashed, "correct horse") is True
    assert verify_password(hashed, "correct horsE") is False
    assert verify_password(hashed, "") is False


def test_hashes_are_salted() -> None:
    """The same password hashed twice gives two different hashes."""
    assert hash_password("same") != hash_password("same")


def test_no_hash_never_verifies() -> None:
    """A missing hash (unknown email) verifies nothing, not even the dummy's password."""
    assert verify_password(None, "anything") is False
    assert verify_password("", "anything") is False


def test_malformed_hash_is_false_not_an_error() -> None:
    """A stored hash that is not an argon2 hash makes verify_password return False."""
    assert verify_password("plaintext-password", "plaintext-password") is False


# --- secrets file ----------------------------------------------------------------------


def test_secrets_file_is_created_private(tmp_path: Path) -> None:
    """The first call creates <data_dir>/secrets.json with mode 0600 and three secrets."""
    data = tmp_path / "data" / "nested"
    created = load_or_create_secrets(data, None)
    path = data / auth.SECRETS_FILE
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored == {"signing_key": created.signing_key,
                      "store_password": created.store_password,
                      "admin_token": created.admin_token}
    assert len({created.signing_key, created.store_password, created.admin_token}) == 3
    assert all(len(v) >= 32 for v in stored.values())
    # 256 bits in hex: never a leading "-" that a command line would take for an option.
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in stored.values())
    assert created.admin_token_generated is True
    assert not list(data.glob("*.tmp"))


def test_secrets_are_kept_across_calls(tmp_path: Path) -> None:
    """A second call returns the same secrets and leaves the file as it was."""
    first = load_or_create_secrets(tmp_path, None)
    text = (tmp_path / auth.SECRETS_FILE).read_text()
    second = load_or_create_secrets(tmp_path, None)
    assert second == first
    assert (tmp_path / auth.SECRETS_FILE).read_text() == text


def test_configured_admin_token_wins(tmp_path: Path) -> None:
    """A configured admin token is used (and not marked generated); the file keeps its own."""
    first = load_or_create_secrets(tmp_path, None)
    chosen = load_or_create_secrets(tmp_path, ADMIN)
    assert chosen.admin_token == ADMIN
    assert chosen.admin_token_generated is False
    assert chosen.signing_key == first.signing_key
    assert json.loads((tmp_path / auth.SECRETS_FILE).read_text())["admin_token"] == (
        first.admin_token)


def test_missing_secrets_are_filled_in(tmp_path: Path) -> None:
    """A secrets file missing a key gets it added; existing keys are kept."""
    path = tmp_path / auth.SECRETS_FILE
    path.write_text(json.dumps({"signing_key": "kept-signing-key"}))
    secrets = load_or_create_secrets(tmp_path, None)
    assert secrets.signing_key == "kept-signing-key"
    assert secrets.store_password and secrets.admin_token
    stored = json.loads(path.read_text())
    assert stored["signing_key"] == "kept-signing-key"
    assert stored["store_password"] == secrets.store_password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_two_data_dirs_get_different_secrets(tmp_path: Path) -> None:
    """Secrets are random: two fresh data folders do not share them."""
    a = load_or_create_secrets(tmp_path / "a", None)
    b = load_or_create_secrets(tmp_path / "b", None)
    assert a.signing_key != b.signing_key
    assert a.admin_token != b.admin_token
