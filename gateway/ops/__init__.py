"""Organiser operations: status, reports, privacy, per-flow commands."""
