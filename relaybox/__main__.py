"""`python -m relaybox`: the same as the `relaybox` command."""

import sys

from relaybox.cli.main import main

sys.exit(main())
