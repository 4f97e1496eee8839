"""The crews solver: balanced crews under the facilitators' constraints."""
