"""``python -m kipd.cli``: the ``kipd`` command."""

import sys

from kipd.cli import main

if __name__ == "__main__":
    sys.exit(main())
