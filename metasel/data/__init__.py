"""The performance table, the SQLite store, exports and importers."""

from metasel.data.store import AppendResult, Store, export_table, read_export
from metasel.data.table import PerfTable, descriptor_map

__all__ = ["AppendResult", "PerfTable", "Store", "descriptor_map", "export_table", "read_export"]
