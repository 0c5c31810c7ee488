"""Builds the official ``elasticsearch`` 9.x client from the ``elasticsearch`` config section.

Retries belong to the shipper (it owns backoff, the spool and per-item semantics), so the
client's own retries are limited to failing over between hosts on connection errors. Secrets
are read here, handed to the client and never logged or put into an exception message.

``compatibility_8x``: the 9.x client announces ``compatible-with=9``, which an 8.x server
refuses (400 ``media_type_header_exception``). With the option on, every request of the agent
carries ``compatible-with=8`` media types instead, which 8.x servers accept and 9.x servers
accept as well (REST compatibility with the previous major).
"""

from __future__ import annotations

import logging
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch.serializer import NdjsonSerializer

from agent.config import ElasticsearchSection, read_secret

# The transport logs every request at INFO and every dead-node mark at WARNING; the shipper
# already logs failures once per episode and counts everything in metrics.
logging.getLogger("elastic_transport.transport").setLevel(logging.WARNING)
logging.getLogger("elastic_transport.node_pool").setLevel(logging.ERROR)

_V8_JSON = "application/vnd.elasticsearch+json; compatible-with=8"
_V8_NDJSON = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"


def json_headers(section: ElasticsearchSection) -> dict[str, str]:
    if section.compatibility_8x:
        return {"accept": _V8_JSON, "content-type": _V8_JSON}
    return {"accept": "application/json", "content-type": "application/json"}


def bulk_headers(section: ElasticsearchSection) -> dict[str, str]:
    if section.compatibility_8x:
        return {"accept": _V8_JSON, "content-type": _V8_NDJSON}
    return {"accept": "application/json", "content-type": "application/x-ndjson"}


class BulkBodySerializer(NdjsonSerializer):
    """Passes the shipper's ready bulk bodies through untouched. The stock NDJSON serializer
    appends a newline to a body that lacks one, which corrupts a body the shipper gzipped
    itself (at level 1: the transport's own ``http_compress`` uses level 9, ~5x the CPU)."""

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        return super().dumps(data)


def _api_key(value: str) -> str | tuple[str, str]:
    """Accept the encoded form (base64 of ``id:key``) or the raw ``id:key`` pair."""
    ident, sep, key = value.partition(":")
    return (ident, key) if sep else value


def build_client(section: ElasticsearchSection) -> Elasticsearch:
    """A client for ``section.hosts``; raises ``ConfigErrors`` when a secret file is unreadable."""
    kwargs: dict[str, Any] = {
        "request_timeout": section.request_timeout_seconds,
        # Bulk bodies are gzipped by the shipper (level 1); setup requests are tiny.
        "http_compress": False,
        "verify_certs": section.verify_certs,
        "max_retries": max(0, len(section.hosts) - 1),
        "retry_on_status": (),
        "retry_on_timeout": False,
        "serializers": {"application/x-ndjson": BulkBodySerializer()},
    }
    if not section.verify_certs:
        kwargs["ssl_show_warn"] = False
    if section.ca_file is not None:
        kwargs["ca_certs"] = str(section.ca_file)
    if section.client_cert_file is not None:
        kwargs["client_cert"] = str(section.client_cert_file)
    if section.client_key_file is not None:
        kwargs["client_key"] = str(section.client_key_file)
    api_key = read_secret(section.api_key, section.api_key_file)
    if api_key:
        kwargs["api_key"] = _api_key(api_key)
    elif section.username:
        password = read_secret(section.password, section.password_file) or ""
        kwargs["basic_auth"] = (section.username, password)
    return Elasticsearch(list(section.hosts), **kwargs)
