"""`python -m reports RUN_DIR | compare RUN_DIR... | index`."""

from reports.cli import main

raise SystemExit(main())
