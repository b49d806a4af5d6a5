"""monitoring domain."""
