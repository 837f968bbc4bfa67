"""``python -m inngest_mw_dev`` is the ``inngest-mw`` command."""

from inngest_mw_dev.cli import main

raise SystemExit(main())
