"""One module per command of the CLI: each declares its options (``add_options``) and runs it (``main``)."""
