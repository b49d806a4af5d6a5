"""release domain."""
