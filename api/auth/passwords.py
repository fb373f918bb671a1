"""Password hashing with Argon2id (argon2-cffi's recommended parameters)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from api.errors import ShokaError

_hasher = PasswordHasher()
# Verified against when the user does not exist, so the answer takes as long either way.
_DUMMY_HASH = _hasher.hash("shoka-timing-equaliser")
MIN_LENGTH = 10


def hash_password(password: str, min_length: int = MIN_LENGTH) -> str:
    """Argon2id hash; `min_length` is lower for patrons' My Library passwords (8) than for staff (10)."""
    check_strength(password, min_length)
    return _hasher.hash(password)


def check_strength(password: str, min_length: int = MIN_LENGTH) -> None:
    if len(password) < min_length:
        raise ShokaError("weak_password", f"パスワードは{min_length}文字以上にしてください。",
                         f"The password must have at least {min_length} characters.",
                         status=422, field="password")


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
