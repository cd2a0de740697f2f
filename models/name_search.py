"""How device names are stored for search: a case-insensitive prefix of the name or
of any word in it, answered from an index by an anchored prefix match.

A name is normalised (NFKC, case-folded, runs of white space as one space) and stored
as its search keys: the normalised name from each word start to its end. "Greenhouse
North-1" gives "greenhouse north-1", "north-1" and "1", so the prefixes "green",
"north", "north-1", "1" and "greenhouse n" all match one key's start, and "house"
matches none. A word starts at a letter or digit that follows anything else.
"""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """`text` as names are compared in search: NFKC, case-folded, spaces collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def name_keys(name: str) -> list[str]:
    """The search keys of a device name, longest (the whole name) first."""
    text = normalise(name)
    keys = [
        text[i:]
        for i, ch in enumerate(text)
        if ch.isalnum() and (i == 0 or not text[i - 1].isalnum())
    ]
    if text and text not in keys:
        keys.insert(0, text)  # a name starting with punctuation is still a prefix match
    return list(dict.fromkeys(keys))


def prefix_pattern(search: str) -> str:
    """The anchored, case-sensitive regex of a normalised search text: on an index over
    the keys MongoDB turns it into one key range (["abc", "abd")), not a scan."""
    return "^" + re.escape(search)
