"""Command groups of the ``vedette`` CLI; each module exposes ``add_parser(subparsers)``."""
