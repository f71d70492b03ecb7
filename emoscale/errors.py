"""The one error type that reaches the user as a single line (see cli.main)."""


class EmoscaleError(Exception):
    """A problem with the user's input: config, files, data. Printed as one line, exit code 2."""


class ConfigError(EmoscaleError):
    """A config key with a wrong name, type or value."""


class DataError(EmoscaleError):
    """A data file that is missing, malformed or holds an impossible value."""
