"""`python -m ollamatopo`: the command line."""

import sys

from ollamatopo._cli import main

if __name__ == "__main__":
    sys.exit(main())
