"""`ncsn evaluate`: placeholder until the command lands (being written)."""


def add_parser(sub) -> None:
    """Register the `evaluate` subcommand (nothing yet)."""
