"""`python -m worker` is `tango-resend`."""

from worker.cli import main

main()
