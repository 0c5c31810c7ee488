"""The serialization fast path: a document short enough to hold no over-long string is sent
as serialized, and gives the very bytes the truncating walk gives, for any document."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sinks.es_docs import document_bytes, truncate_long_strings

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | st.builds(
    lambda c, n: c * n, st.sampled_from(["a", "é", "中", "😀", "\n", "\x01"]),
    st.integers(0, 3000))
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=6), VALUES, max_size=5),
       limit=st.sampled_from([64, 1000, 8192]))
def test_the_fast_path_sends_what_the_walk_sends(doc: dict[str, Any], limit: int) -> None:
    walked = json.dumps(truncate_long_strings(doc, limit), ensure_ascii=False,
                        separators=(",", ":"), default=str).encode()
    assert document_bytes(doc, limit) == walked
