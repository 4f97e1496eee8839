"""Registration: questions, capacity and waiting list, confirm, cancel."""
