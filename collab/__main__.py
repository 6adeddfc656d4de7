"""`python -m collab` is the `collab` command."""

import sys

from collab.cli.main import main

sys.exit(main())
