"""A tiny app with real tables for the model-events tests (and the URLconf of the webhook test server)."""
