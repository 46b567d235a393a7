"""Entry point: ``python bot.py``. Configuration comes from the environment and ``.env``."""

import signal
import sys

# A stop asked for while the bot is still loading (systemd, a supervisor): nothing has started
# yet, so leave cleanly. Once running, the app's own handlers take over (a graceful stop).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

from botcore.app import main  # noqa: E402  (after the handler: importing takes a moment)

if __name__ == "__main__":
    sys.exit(main())
