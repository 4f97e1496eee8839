"""What every flow shares: questions, answer parsing, forms."""
