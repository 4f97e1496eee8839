"""iCalendar invites out (iMIP REQUEST) and replies in."""
