"""The public catalogue (OPAC), an internet-facing process that holds no patron personal data."""
