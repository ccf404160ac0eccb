"""``suanli serve`` keeps its long-lived fold out of the collector's full passes."""

from __future__ import annotations

import gc
import threading
import time

from api.serve import freeze_collector


def test_what_lives_on_is_frozen_and_new_objects_are_frozen_at_the_next_tick() -> None:
    gc.unfreeze()
    stop = threading.Event()
    thread = freeze_collector(stop, every=0.05)
    try:
        deadline = time.monotonic() + 10
        while gc.get_freeze_count() == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first = gc.get_freeze_count()
        kept = [[i] for i in range(10_000)]  # new long-lived containers
        while gc.get_freeze_count() < first + len(kept):
            assert time.monotonic() < deadline, "the next tick did not freeze them"
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
        gc.unfreeze()
    assert not thread.is_alive()
    assert len(kept) == 10_000
