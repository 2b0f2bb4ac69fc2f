"""Entry point for ``python -m uffdsim``."""
import sys

try:
    from .cli import main
except KeyboardInterrupt:          # Ctrl-C while still importing: no traceback
    sys.exit(130)

sys.exit(main())
