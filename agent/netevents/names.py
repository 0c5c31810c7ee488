"""Computed DNS name fields: registered domain (public suffix list), subdomain, length, entropy.

Results are cached per name (bounded LRU): a tunnel repeats its domain, a busy resolver repeats
popular names, so the public-suffix lookup and the entropy sum run once per distinct name.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from typing import NamedTuple

from publicsuffixlist import PublicSuffixList

_PSL = PublicSuffixList()
_ESCAPED = re.compile(r"\\(\d{3})")


def octets(text: str) -> str:
    """One character per octet: each ``\\DDD`` escape of the presentation form becomes one symbol.

    Lengths and entropy are properties of the bytes on the wire; binary labels (iodine's
    Base128) would otherwise look long but low-entropy (only backslashes and digits).
    """
    if "\\" not in text:
        return text
    return _ESCAPED.sub(lambda m: chr(0x100 + int(m.group(1))), text)


class NameInfo(NamedTuple):
    registered_domain: str
    top_level_domain: str
    subdomain: str
    subdomain_length: int
    subdomain_entropy: float
    max_label_length: int


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text`` (0.0 for an empty string), rounded to 3 decimals."""
    if not text:
        return 0.0
    n = len(text)
    total = 0.0
    for count in Counter(text).values():
        p = count / n
        total -= p * math.log2(p)
    return round(total, 3)


@lru_cache(maxsize=32768)
def analyse(name: str) -> NameInfo:
    """Split ``name`` (lower-case presentation form, no trailing dot) at its registered domain."""
    labels = name.split(".") if name else []
    max_label = max((len(octets(label)) for label in labels), default=0)
    try:
        registered = (_PSL.privatesuffix(name) or "") if name else ""
        tld = (_PSL.publicsuffix(name) or "") if name else ""
    except (ValueError, IndexError):  # pragma: no cover - defensive; the PSL accepts any text
        registered, tld = "", ""
    subdomain = name[: -len(registered) - 1] if registered and name != registered else ""
    wire = octets(subdomain)
    flat = wire.replace(".", "")
    return NameInfo(registered, tld, subdomain, len(wire), shannon_entropy(flat), max_label)
