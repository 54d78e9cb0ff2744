"""xlint's click commands (installed as ``xlint.cli``)."""
