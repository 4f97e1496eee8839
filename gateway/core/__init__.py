"""The engine: one transaction per inbound message, outbox, timers, routing."""
