"""`python -m ssd_zoo.cli`: the `ssd-zoo` command."""
from ssd_zoo.cli import main

raise SystemExit(main())
