"""`python -m worker` is `tango-resend`."""

from worker.cli.entry import main

main()
