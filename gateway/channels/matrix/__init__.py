"""Matrix: a matrix-nio bot in direct rooms, crew rooms and the organisers' room."""
