"""Errors the control center's app, screens and widgets share."""


class DatabaseUnavailable(Exception):
    """The database could not be reached (or the statement failed); the message is safe to show."""
