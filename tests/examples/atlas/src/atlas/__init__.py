"""Atlas: a chat command turns a project request into a domain discovery and a masterplan."""

__version__ = "0.9.3"
