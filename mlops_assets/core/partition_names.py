"""Which file names can be partition keys. Standard library only: the CLI checks names before it lands them."""

MAX_NAME_BYTES = 200  # a partition's value lands in file names (assets/<asset>/<key>.bin): under 255


def unusable_name(key: str) -> str | None:
    """Why a file's name cannot be a partition key, or None. Dagster refuses keys with ``...``, a
    tab or a newline, and a long name fails as a file name where the partition is stored."""
    if "..." in key or "\t" in key or "\n" in key or "\r" in key:
        return "contains '...', a tab or a newline, which Dagster refuses in a partition key"
    if len(key.encode()) > MAX_NAME_BYTES:
        return f"name longer than {MAX_NAME_BYTES} bytes"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return "not a plain relative name"
    return None
