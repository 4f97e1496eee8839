"""Channels: raw input to InboundMessage, outbox rows to the wire."""
