"""Delivery: transports (outbox folder, SMTP pool), the shared rate limit, the per-message
ledger and the worker threads that tie them together."""
