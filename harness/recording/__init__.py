"""Recording support: a local server speaking the LLM vendors' wire formats, and realistic content for it."""
