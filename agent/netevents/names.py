"""Computed DNS name fields: registered domain (public suffix list), subdomain, length, entropy.

Results are cached per name (bounded LRU): a tunnel repeats its domain, a busy resolver repeats
popular names, so the public-suffix lookup and the entropy sum run once per distinct name.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import NamedTuple

from publicsuffixlist import PublicSuffixList

_PSL = PublicSuffixList()


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
    max_label = max((len(label) for label in labels), default=0)
    try:
        registered = (_PSL.privatesuffix(name) or "") if name else ""
        tld = (_PSL.publicsuffix(name) or "") if name else ""
    except (ValueError, IndexError):  # pragma: no cover - defensive; the PSL accepts any text
        registered, tld = "", ""
    subdomain = name[: -len(registered) - 1] if registered and name != registered else ""
    flat = subdomain.replace(".", "")
    return NameInfo(registered, tld, subdomain, len(subdomain), shannon_entropy(flat), max_label)
