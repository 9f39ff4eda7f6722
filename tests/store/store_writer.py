"""Subprocess for tests/store/test_store.py: write 2,000 synthetic cells in batches of 100, resuming.

Usage: python store_writer.py STORE. Prints "batch N" after each committed batch.
"""

import sys

import numpy as np

from geolink_store.store import Store
from geolink_store.testing import cells_table, h3_grid

store = Store.create_or_open(sys.argv[1])
cells = h3_grid(2000)
todo = cells[~np.isin(cells, store.existing_cells("test-model"))]
table = cells_table(cells, 16)
table = table.filter(np.isin(table["h3"].to_numpy(), todo))
for number, batch in enumerate(table.to_batches(max_chunksize=100)):
    store.upsert("cells", batch)
    print(f"batch {number}", flush=True)
