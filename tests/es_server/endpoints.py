"""Template, ILM, data-stream and read endpoints of the fake Elasticsearch (a mixin of the
request handler in ``server.py``, which provides ``_send``, ``_error`` and ``_deny``)."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from .cluster import Cluster


class AdminEndpoints:
    command: str

    def _send(self, status: int, body: Any, extra: dict[str, str] | None = None,
              cut: bool = False) -> None:
        raise NotImplementedError

    def _error(self, status: int, type_: str, reason: str,
               extra: dict[str, str] | None = None) -> tuple[int, Any, int]:
        raise NotImplementedError

    def _deny(self, user: str, action: str, privilege: str) -> tuple[int, Any, int]:
        raise NotImplementedError

    def _template(self, cluster: Cluster, kind: str, name: str, method: str, raw: bytes,
                  privs: frozenset[str], user: str) -> tuple[int, Any, int]:
        store = {"ilm": cluster.ilm_policies, "component": cluster.component_templates,
                 "index": cluster.index_templates}[kind]
        if method in ("PUT", "POST"):
            if "manage_templates" not in privs:
                return self._deny(user, f"cluster:admin/{kind}/put", "manage_index_templates")
            cluster.put(kind, name, json.loads(raw))
            self._send(200, {"acknowledged": True})
            return 200, None, 0
        if "monitor" not in privs and "manage_templates" not in privs:
            return self._deny(user, f"cluster:admin/{kind}/get", "monitor")
        if name not in store:
            if kind == "ilm":
                return self._error(404, "resource_not_found_exception",
                                   f"Lifecycle policy not found: {name}")
            return self._error(404, "resource_not_found_exception",
                               f"{kind} template matching [{name}] not found")
        if kind == "ilm":
            self._send(200, {name: store[name]})
        else:
            key = f"{kind}_templates"
            self._send(200, {key: [{"name": name, f"{kind}_template": store[name]}]})
        return 200, None, 0

    def _data_stream(self, cluster: Cluster, name: str, method: str, privs: frozenset[str],
                     user: str) -> tuple[int, Any, int]:
        if method == "PUT":
            if "manage_templates" not in privs:
                return self._deny(user, "indices:admin/data_stream/create", "create_index")
            cluster.create_data_stream(name)
            self._send(200, {"acknowledged": True})
            return 200, None, 0
        found = [d for n in sorted(cluster.data_streams) if fnmatch.fnmatchcase(n, name)
                 for d in [cluster.get_data_stream(n)] if d]
        if not found and "*" not in name:
            return self._error(404, "index_not_found_exception", f"no such index [{name}]")
        self._send(200, {"data_streams": found})
        return 200, None, 0

    def _read(self, cluster: Cluster, parts: list[str], raw: bytes) -> tuple[int, Any, int]:
        target, action = parts[0], parts[1]
        indices = cluster.resolve_read(target)
        if not indices and "*" not in target:
            return self._error(404, "index_not_found_exception", f"no such index [{target}]")
        if action == "_refresh":
            self._send(200, {"_shards": {"total": 1, "successful": 1, "failed": 0}})
            return 200, None, 0
        if action == "_doc":
            doc = next((i.docs[parts[2]] for i in indices if parts[2] in i.docs), None)
            if doc is None:
                self._send(404, {"_index": target, "_id": parts[2], "found": False})
                return 404, None, 0
            self._send(200, {"_index": doc.index, "_id": doc.id, "_version": doc.version,
                             "_seq_no": doc.seq_no, "_primary_term": 1, "found": True,
                             "_source": doc.source})
            return 200, None, 0
        query = (json.loads(raw) if raw else {}).get("query", {"match_all": {}})
        docs = [d for i in indices for d in i.docs.values() if _matches(d.source, d.id, query)]
        if action == "_count":
            self._send(200, {"count": len(docs), "_shards": {"total": 1, "successful": 1}})
            return 200, None, 0
        size = int((json.loads(raw) if raw else {}).get("size", 10))
        hits = [{"_index": d.index, "_id": d.id, "_score": 1.0, "_source": d.source}
                for d in docs[:size]]
        self._send(200, {"took": 1, "timed_out": False,
                         "hits": {"total": {"value": len(docs), "relation": "eq"},
                                  "max_score": 1.0, "hits": hits}})
        return 200, None, 0


def _matches(source: dict[str, Any], doc_id: str, query: dict[str, Any]) -> bool:
    """match_all, ids, term, terms and bool.filter/must of those — enough for the tests."""
    (kind, spec), = query.items()
    if kind == "match_all":
        return True
    if kind == "ids":
        return doc_id in spec["values"]
    if kind in ("term", "terms"):
        (fname, wanted), = spec.items()
        if isinstance(wanted, dict):
            wanted = wanted["value"]
        values = wanted if kind == "terms" else [wanted]
        got = _lookup(source, fname)
        got_list = got if isinstance(got, list) else [got]
        return any(g == v for g in got_list for v in values)
    if kind == "bool":
        clauses = spec.get("filter", []) + spec.get("must", [])
        clauses = clauses if isinstance(clauses, list) else [clauses]
        return all(_matches(source, doc_id, c) for c in clauses)
    raise ValueError(f"query [{kind}] not supported by the test server")


def _lookup(source: dict[str, Any], dotted: str) -> Any:
    node: Any = source
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
