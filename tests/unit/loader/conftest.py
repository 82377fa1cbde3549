from __future__ import annotations

from loader_cluster import cluster  # noqa: F401  (the in-process ingest cluster fixture)
