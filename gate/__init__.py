"""canary-gate: judge a canary release against its concurrent baseline and seasonal history."""

__version__ = "0.1.0"
