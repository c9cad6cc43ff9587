"""The asyncio worker (`automate-aio-worker`). Never imports ``automate.models``."""
