"""The one error type that reaches the user as a single line (see cli.main)."""


class EmoscaleError(Exception):
    """A problem with the user's input: config, files, data. Printed as one line, exit code 2."""


class ConfigError(EmoscaleError):
    """A config key with a wrong name, type or value."""


class DataError(EmoscaleError):
    """A data file that is missing, malformed or holds an impossible value."""


def reason(error: BaseException, limit: int = 200) -> str:
    """A library exception in a few words for an error line: its message's lines joined (PEFT and
    DeepSpeed write several), cut to `limit`; the type's name when the message is empty (a bare
    `assert`)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return (text[:limit] + ("..." if len(text) > limit else "")) if text else type(error).__name__
