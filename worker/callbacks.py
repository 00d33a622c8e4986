"""Where the in-process outcome hook lived before the package layout: kept so that code
written as `@worker.callbacks.resend_finished.connect` keeps working. New code: `from worker
import resend_finished`."""

from worker.resend.callbacks import resend_finished

__all__ = ["resend_finished"]
