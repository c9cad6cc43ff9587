"""Database triggers that refuse UPDATE of immutable rows, so raw SQL cannot change them either."""

from django.db import migrations

IMMUTABLE_TABLES = ("automate_event", "automate_workflow_version", "automate_audit_log")

FUNCTION = """
CREATE OR REPLACE FUNCTION automate_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'automate: rows of % are immutable; UPDATE refused', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$;
"""


def _triggers(create: bool) -> list[str]:
    out = []
    for table in IMMUTABLE_TABLES:
        name = f"{table}_refuse_update"
        if create:
            out.append(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION automate_refuse_update();"
            )
        else:
            out.append(f"DROP TRIGGER IF EXISTS {name} ON {table};")
    return out


class Migration(migrations.Migration):
    dependencies = [("automate", "0001_initial")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION IF EXISTS automate_refuse_update();"),
        migrations.RunSQL(_triggers(True), _triggers(False)),
    ]
