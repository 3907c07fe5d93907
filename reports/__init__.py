"""HTML reports rendered from lmladder result records."""
