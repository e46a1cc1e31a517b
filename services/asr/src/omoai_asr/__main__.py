"""``python -m omoai_asr`` and the ``omoai-asr`` console script."""

from __future__ import annotations

import sys

from omoai_asr.cli import main

if __name__ == "__main__":
    sys.exit(main())
