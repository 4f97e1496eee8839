"""Organiser operations for crews: inputs, proposal, report."""
