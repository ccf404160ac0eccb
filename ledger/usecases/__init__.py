"""The use-case layer: every write the service makes and every read model it shows,
written once over a unit of work and a snapshot of the state.

* :mod:`ledger.usecases.commands`: the write use cases (plain functions over a
  :class:`UnitOfWork`): publish a round, register an entity, submit / review / decide an
  application, issue and change vouchers, pay grants, the centres' claims exactly once,
  corrections, statements, the log's keys and notes.
* :mod:`ledger.usecases.views`: the read models (functions of a :class:`Snapshot`).

HTTP, gRPC, the CLI, the simulator, the benchmarks and the tests call these; none of them
re-implements a use case. Like the rest of ``ledger/`` (but ``ledger/store``), this layer
does no I/O and imports no web or database framework: the store's transaction is one unit
of work (``api.bootstrap``), :class:`MemoryUnitOfWork` is another.
"""

from ledger.usecases.unit_of_work import Appended, MemoryUnitOfWork, UnitOfWork
from ledger.usecases.views import Snapshot

__all__ = ["Appended", "MemoryUnitOfWork", "Snapshot", "UnitOfWork"]
