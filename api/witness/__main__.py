"""``python -m api.witness``: the witness CLI on its own (``suanli witness`` once mounted)."""

from api.witness.cli import main

main()
