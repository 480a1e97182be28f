"""`ncsn toy`: placeholder until the toy experiment lands (being written)."""


def add_parser(sub) -> None:
    """Register the `toy` subcommand (nothing yet)."""
