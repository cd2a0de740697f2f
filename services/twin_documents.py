"""Twin documents as pure functions: RFC 7396 merge patch, the delta, the document rules.

No I/O. A twin document is a JSON object; MongoDB keeps it as a subdocument, so its
keys follow the rules Azure IoT Hub's device twins use too: not empty, no `$` at the
start, no `.` (MongoDB reads both as operators or paths), no NUL; at most
MAX_DEPTH levels of objects and arrays; integers within 64 bits (BSON's). Its size is its
compact JSON encoding in UTF-8.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

# Levels of nested objects and arrays (the document is level 1); as Azure IoT Hub's 10.
MAX_DEPTH: Final = 10
_INT64: Final = 2**63


class InvalidDocument(ValueError):
    """The document breaks a rule; the message names the path (`desired.a.b`)."""


class DocumentTooLarge(InvalidDocument):
    """The document is valid but over its size limit."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 section 2: `patch` applied to `target`; neither argument is changed.

    A non-object patch replaces the target; in an object patch a null value removes
    its key, an object value is merged recursively, any other value replaces.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def same(left: Any, right: Any) -> bool:
    """JSON equality: 1 and 1.0 are the same number, `true` and 1 are not."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(v, right[k]) for k, v in left.items())
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same, left, right))
    return type(left) is type(right) and bool(left == right)


def delta(desired: dict[str, Any], reported: dict[str, Any]) -> dict[str, Any]:
    """The desired keys whose value differs from reported, recursively for objects.

    Where both sides hold an object, the delta holds only the differing keys below it
    (as AWS IoT shadows and Azure twins do); anything else (numbers, strings, arrays,
    an object against a non-object) differs as a whole. Keys only reported are not
    in the delta: the device may report more than anyone asked for.
    """
    result: dict[str, Any] = {}
    for key, wanted in desired.items():
        if key not in reported:
            result[key] = wanted
            continue
        have = reported[key]
        if isinstance(wanted, dict) and isinstance(have, dict):
            below = delta(wanted, have)
            if below:
                result[key] = below
        elif not same(wanted, have):
            result[key] = wanted
    return result


def encoded_size(document: Any) -> int:
    """Bytes of the compact JSON encoding, UTF-8 (what a size limit counts)."""
    return len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())


def check_document(document: Any, *, name: str, max_bytes: int) -> dict[str, Any]:
    """`document` when it is a JSON object within the rules (module docstring) and at
    most `max_bytes`; InvalidDocument naming the first offending path otherwise."""
    if not isinstance(document, dict):
        raise InvalidDocument(f"{name}: must be a JSON object")
    _check_value(document, name, 1)
    try:
        size = encoded_size(document)
    except (TypeError, ValueError, UnicodeEncodeError) as err:  # a lone surrogate
        raise InvalidDocument(f"{name}: not encodable as JSON text ({err})") from err
    if size > max_bytes:
        raise DocumentTooLarge(f"{name}: {size} bytes of JSON, at most {max_bytes} allowed")
    return document


def check_patch(patch: Any, *, name: str) -> dict[str, Any]:
    """A merge patch for a twin: a JSON object whose keys follow the document rules
    (its nulls are removals, not values)."""
    if not isinstance(patch, dict):
        raise InvalidDocument(f"{name}: must be a JSON object (an RFC 7396 merge patch)")
    _check_value(patch, name, 1, nulls=True)
    return patch


def _check_value(value: Any, path: str, depth: int, *, nulls: bool = False) -> None:
    if isinstance(value, dict | list) and depth > MAX_DEPTH:
        raise InvalidDocument(f"{path}: more than {MAX_DEPTH} levels of objects and arrays")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_key(key, path)
            if item is None and not nulls:
                raise InvalidDocument(f"{path}.{key}: null is not a value (it removes a key)")
            _check_value(item, f"{path}.{key}", depth + 1, nulls=nulls)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            # Inside arrays null is a value like any other (RFC 7396 replaces arrays whole).
            _check_value(item, f"{path}[{index}]", depth + 1, nulls=True)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise InvalidDocument(f"{path}: integer outside 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidDocument(f"{path}: not a finite number")
    else:
        raise InvalidDocument(f"{path}: not a JSON value")


def _check_key(key: object, path: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidDocument(f"{path}: keys must be non-empty strings")
    if key.startswith("$") or "." in key or "\x00" in key:
        raise InvalidDocument(f"{path}: key {key[:64]!r} may not start with $ or hold . or NUL")
