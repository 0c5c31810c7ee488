"""A minimal agent for the kill -9 test: spools N alerts through the Elasticsearch sink, prints
``emitted``, waits until everything is acknowledged and prints its counts as JSON.

    python -m tests.es_server.driver TMP_DIR URL COUNT
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from agent.sinks.elasticsearch import ElasticsearchSink, spool_dir
from tests.es_server.helpers import IDENTITY, fresh_metrics, make_alert, make_config, sample


def main(argv: list[str]) -> int:
    tmp, url, count = Path(argv[0]), argv[1], int(argv[2])
    config = make_config(tmp, [url], batch_max_docs=50, retry_backoff_max_seconds=0.2)
    metrics = fresh_metrics()
    sink = ElasticsearchSink(config.elasticsearch, IDENTITY, metrics, spool_dir(config))
    for i in range(count):
        sink.emit(make_alert(i))
    print("emitted", flush=True)
    deadline = time.monotonic() + 60
    while not sink.idle() and time.monotonic() < deadline:
        time.sleep(0.02)
    sink.close()
    counts = {
        "shipped": sample(metrics, "vedette_es_docs_shipped_total", stream="alerts"),
        "duplicates": sample(metrics, "vedette_es_duplicates_avoided_total", stream="alerts"),
        "idle": sink.idle(),
    }
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
