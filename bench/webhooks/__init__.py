"""The webhook receiver's yardsticks: a minimal peer receiver and a signed-webhook load."""
