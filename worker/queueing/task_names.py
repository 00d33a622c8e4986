"""The Celery task names: part of every task message, so they never change."""

RESEND_TASK_NAME = "tango_resend.send_resend"
DELIVER_TASK_NAME = "tango_resend.deliver_outcome"
