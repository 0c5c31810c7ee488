"""A wire-faithful fake Elasticsearch for tests (never imported by the agent)."""

from .certs import Certs, make_certs
from .cluster import Cluster
from .server import ALL_PRIVILEGES, FakeElasticsearch, Faults, tls_context

__all__ = ["ALL_PRIVILEGES", "Certs", "Cluster", "FakeElasticsearch", "Faults", "make_certs",
           "tls_context"]
