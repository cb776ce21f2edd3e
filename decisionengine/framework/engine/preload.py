"""Imported last by the channel fork server: freeze what it has loaded.

Channel processes are forked from the fork server and share its memory pages until they
write to them.  Python's cyclic garbage collector writes to every object it scans, which
would copy those pages into each channel one by one; ``gc.freeze()`` moves everything
loaded so far out of the collector's reach, so the shared pages stay shared.
"""

import gc

gc.collect()
gc.freeze()
