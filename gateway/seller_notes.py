"""Seller bookkeeping the verifier learns while answering, written off the reply path.

A verification that meets a seller for the first time registers it (its ``first_seen``
starts the new-seller inspection rate), and every REJECT is noted against its seller (the
recent-rejects rate). Both are database writes, and a write waits for the ledger's write
lock, which the worker's event ingest holds while it appends. Made inline, that wait came
before the verdict was published: every request behind it waited too (measured in the demo
site, 4 gates × 20 items/s: scan-to-decision p99 124 ms with the writes inline, 48 ms
without them).

:class:`SellerNotes` takes the notes from the verifier (:meth:`SellerNotes.submit`, never
blocks) and writes them on its own thread and database connection, in one transaction per
gathering. Nothing a verdict depends on waits for it: a seller not yet registered is
treated as new (the highest rate), as it was before its registration. :meth:`close`
writes what is still queued. The verifier falls back to writing inline when the queue is
full or the notes were closed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.ledger.store import SqlStore
from gateway.registry import Registry, RegistryError, Seller
from gatewire.messages import Decision

__all__ = ["SellerNotes", "record_seller_notes"]

log = logging.getLogger(__name__)

QUEUE_SIZE: Final = 10_000
"""Notes waiting to be written; beyond it the verifier writes inline (a stalled disk)."""
_GATHER: Final = 256  # notes written in one transaction at most
_STOP: Final = object()


@dataclass(frozen=True, slots=True)
class _Note:
    missing: tuple[str, ...]
    rejected: tuple[str, ...]
    now: float


def record_seller_notes(
    registry: Registry, missing: Sequence[str], rejected: Sequence[str], now: float
) -> list[Seller]:
    """Register the ``missing`` sellers and note a REJECT for each of ``rejected`` (a seller
    may appear more than once), in one write transaction; the sellers registered (or found
    registered). A seller ID the registry refuses is logged and skipped."""
    sellers = []
    with registry.store.write():
        for seller in missing:
            try:
                sellers.append(registry.ensure_seller(seller, now))
            except RegistryError as exc:
                log.warning("seller %.80r not registered: %s", seller, exc)
        for seller in rejected:
            try:
                registry.note_outcome(seller, Decision.REJECT.value, now)
            except RegistryError as exc:
                log.warning("REJECT of seller %.80r not recorded: %s", seller, exc)
    return sellers


class SellerNotes:
    """Writes the verifier's seller notes on a thread of its own (its own connection)."""

    def __init__(self, open_store: Callable[[], SqlStore], *, name: str = "seller-notes") -> None:
        self._queue: queue.Queue[_Note | object] = queue.Queue(maxsize=QUEUE_SIZE)
        self._open_store = open_store
        self._closed = False
        self._lock = threading.Lock()
        self.written = 0
        """Notes written so far."""
        self.failed = 0
        """Notes whose transaction failed (logged; the verdicts stand)."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, missing: Sequence[str], rejected: Sequence[str], now: float) -> bool:
        """Queue a note; False (nothing queued) when full or closed: write it inline then."""
        with self._lock:
            if self._closed:
                return False
            try:
                self._queue.put_nowait(_Note(tuple(missing), tuple(rejected), now))
            except queue.Full:
                return False
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is queued, then stop; True if the thread ended within ``timeout``
        (never blocks longer, even with a full queue or a thread that died)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            first, self._closed = not self._closed, True  # submit() refuses from now on
        if first:
            try:  # after every note queued; waits for room while the thread writes
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                log.warning("seller notes: still writing at close; the rest is dropped")
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._serve()
        except Exception:  # cannot open the ledger, or its registry: the verifier writes
            log.exception("seller notes: stopped; the verifier writes the notes itself")
        finally:
            with self._lock:
                self._closed = True  # submit() refuses from now on: written inline
            self._drop_queued()

    def _serve(self) -> None:
        store = self._open_store()
        try:
            registry = Registry(store)
            stopping = False
            while not stopping:
                notes: list[_Note] = []
                item = self._queue.get()
                while True:
                    if isinstance(item, _Note):
                        notes.append(item)
                    else:
                        stopping = True
                        break
                    if len(notes) >= _GATHER:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if notes:
                    self._write(registry, notes)
        finally:
            store.close()

    def _write(self, registry: Registry, notes: list[_Note]) -> None:
        """Every note of a gathering, each at its own time, in one transaction."""
        try:
            with registry.store.write():
                for note in notes:
                    record_seller_notes(registry, note.missing, note.rejected, note.now)
            self.written += len(notes)
        except Exception:  # a failed write must not end the thread: the verdicts stand
            self.failed += len(notes)
            log.exception("seller notes: %d note(s) not written", len(notes))

    def _drop_queued(self) -> None:
        """Count the notes left in the queue when the thread ends as failed (none after a
        clean stop: the stop marker comes after every note)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self.failed += item is not _STOP
