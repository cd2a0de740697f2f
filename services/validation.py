"""Input rules shared by the services: each failure names its field."""

from __future__ import annotations

import unicodedata

from bson import ObjectId
from email_validator import EmailNotValidError, validate_email

from services.errors import BadInput, NotFound
from services.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

MAX_EMAIL_LENGTH = 254


def normalise_email(email: str, *, field: str = "email") -> str:
    """A syntactically valid e-mail address, lower-cased."""
    candidate = email.strip()
    if not candidate:
        raise BadInput(field, "must not be empty")
    if len(candidate) > MAX_EMAIL_LENGTH:
        raise BadInput(field, f"must be at most {MAX_EMAIL_LENGTH} characters")
    try:
        valid = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as err:
        raise BadInput(field, f"not a valid e-mail address ({err})") from err
    return valid.normalized.lower()


def check_password(password: str, *, field: str = "password") -> str:
    """The password, when its length is within the contract's bounds."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise BadInput(
            field, f"must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )
    return password


def clean_text(value: str, *, field: str, max_length: int) -> str:
    """Trimmed text of 1..max_length printable characters."""
    text = value.strip()
    if not text:
        raise BadInput(field, "must not be empty")
    if len(text) > max_length:
        raise BadInput(field, f"must be at most {max_length} characters")
    # Cs: a lone surrogate (JSON's "\ud800"), which BSON cannot store.
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs"} for ch in text):
        raise BadInput(field, "must not contain control characters")
    return text


def parse_id(value: str, *, kind: str, field: str = "id") -> ObjectId:
    """The ObjectId an API id stands for; BadInput when malformed."""
    if not ObjectId.is_valid(value) or len(value) != 24:
        raise BadInput(field, f"not a valid {kind} id")
    return ObjectId(value)


def ensure_found[T](value: T | None, kind: str) -> T:
    """`value`, or NotFound."""
    if value is None:
        raise NotFound(kind)
    return value
