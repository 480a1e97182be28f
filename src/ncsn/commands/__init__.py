"""One module per `ncsn X` command; only ncsn.cli imports them."""
