"""Crew assignment: proposal, organiser approval, introductions."""
