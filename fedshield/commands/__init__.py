"""Sub-commands of the ``fedshield`` CLI, one module each (``add_parser(subparsers)``)."""
