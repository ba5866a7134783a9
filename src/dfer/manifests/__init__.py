"""Dataset manifests: official split files -> one normalized, sharded table per dataset.

``sync_dataset`` is what the pipeline calls at parse time; ``build_manifest`` validates without
writing; ``read_manifest`` opens a written manifest; ``DATASET_LABELS`` / ``canonical_label``
are the label conventions every stage shares.
"""

from dfer.manifests.build import MANIFEST_COLUMNS, MANIFEST_SCHEMA, ManifestBuild, build_manifest
from dfer.manifests.labels import CANONICAL_LABELS, DATASET_LABELS, canonical_label
from dfer.manifests.problems import ManifestError
from dfer.manifests.sync import SCHEMA_VERSION, SyncReport, read_manifest, sync_dataset, sync_report

__all__ = [
    "CANONICAL_LABELS",
    "DATASET_LABELS",
    "MANIFEST_COLUMNS",
    "MANIFEST_SCHEMA",
    "SCHEMA_VERSION",
    "ManifestBuild",
    "ManifestError",
    "SyncReport",
    "build_manifest",
    "canonical_label",
    "read_manifest",
    "sync_dataset",
    "sync_report",
]
