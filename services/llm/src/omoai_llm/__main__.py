"""Entry point of ``omoai-llm`` and ``python -m omoai_llm``."""

from __future__ import annotations

import sys

from omoai_llm.cli import main

if __name__ == "__main__":
    sys.exit(main())
