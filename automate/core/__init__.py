"""Pure building blocks: no Django, no psycopg, no network (checked by import-linter)."""
