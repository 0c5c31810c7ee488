"""Run the fake Elasticsearch in its own process (for the benchmark): prints its URL, serves
until stdin closes.  ``python -m tests.es_server [--port N] [--no-mapping-checks]``"""

from __future__ import annotations

import argparse
import sys

from .cluster import Cluster
from .server import FakeElasticsearch


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-mapping-checks", action="store_true")
    parser.add_argument("--raw-sources", action="store_true",
                        help="keep documents unparsed (benchmark mode)")
    args = parser.parse_args()
    cluster = Cluster()
    cluster.check_mappings = not args.no_mapping_checks
    cluster.raw_sources = args.raw_sources
    server = FakeElasticsearch(cluster)
    server.port = args.port
    server.start()
    print(server.url, flush=True)
    sys.stdin.read()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
