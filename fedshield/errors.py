"""One exception type for bad input, so the CLI can print one clear line."""


class FedshieldError(ValueError):
    """Raised for invalid user input (shapes, ranges, names, missing files)."""
