"""Development tools, not shipped: a local server speaking the LLM vendors' wire formats, realistic content
for it, and the scenarios the committed cassettes are recorded from (``python -m tests.support.scenarios``)."""
