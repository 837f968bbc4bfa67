"""``python -m benchmarks [--quick] [--no-plot] [--out DIR] [--only SECTION]``."""

from benchmarks.cli import main

raise SystemExit(main())
