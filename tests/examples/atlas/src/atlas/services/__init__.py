"""The services behind the chat commands."""
