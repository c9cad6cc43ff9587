"""django-automate: events in, audited and traced workflow runs out."""

__version__ = "0.1.0"
