"""Entry point: python -m coursekit <command>."""

import sys

from .cli import main

sys.exit(main())
