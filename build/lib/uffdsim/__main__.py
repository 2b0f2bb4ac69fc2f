"""Entry point for ``python -m uffdsim``."""
import sys

from .cli import main

sys.exit(main())
