"""batch domain."""
