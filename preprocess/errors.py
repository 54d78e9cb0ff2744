"""The one exception type that preprocessing raises for problems a user can fix."""
from __future__ import annotations


class PreprocessError(Exception):
    """Bad input, a bad option or an output directory that does not match the run.

    Its message is a single line meant for the user (the CLI prints it without a
    traceback); everything else that goes wrong is a bug and keeps its traceback.
    """
