"""Entry point: ``python bot.py``. Configuration comes from the environment and ``.env``."""

import sys

from botcore.app import main

if __name__ == "__main__":
    sys.exit(main())
