"""Django views of the automate app that are not part of a larger feature package."""
