"""A tiny application for the point-wrapper tests: functions, methods, an async one, and an import by name."""
