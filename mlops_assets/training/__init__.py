"""training domain."""
