"""The book build: the manifest (book.toml), the Sphinx configuration, the shared execution cache."""
