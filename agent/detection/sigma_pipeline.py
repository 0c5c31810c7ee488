"""The pySigma processing pipeline that maps Sigma field names onto Vedette's event fields.

Built once from the field catalogue (:mod:`agent.detection.fields`): one
``FieldMappingTransformation`` per logsource that has Sigma names, scoped with a
``LogsourceCondition`` so that ``Image`` means ``process.executable`` on process and network
events and nothing elsewhere. Fields the catalogue does not know are rejected afterwards by the
compiler, with the list of offending names.
"""

from __future__ import annotations

from functools import cache

from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation

from agent.detection.fields import sigma_field_mappings


@cache
def vedette_pipeline() -> ProcessingPipeline:
    items = []
    for entry, names in sigma_field_mappings():
        mapping: dict[str | None, str | list[str]] = dict(names.items())
        condition = LogsourceCondition(
            product=entry.product, category=entry.category, service=entry.service
        )
        items.append(
            ProcessingItem(
                FieldMappingTransformation(mapping),
                rule_conditions=[condition],
                identifier=f"vedette_{entry.product}_{entry.category or entry.service or 'any'}",
            )
        )
    return ProcessingPipeline(name="Vedette field mapping", priority=10, items=items)
