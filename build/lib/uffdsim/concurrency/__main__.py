"""``python -m uffdsim.concurrency``: the atomicity subcommand on its own (until the top-level
CLI wires ``python -m uffdsim atomicity`` to :mod:`.cli`)."""
import sys

from .cli import main

sys.exit(main())
