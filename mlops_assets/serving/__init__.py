"""serving domain."""
