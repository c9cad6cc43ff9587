from django.db import migrations, models


class Migration(migrations.Migration):
    """The claim token: a fencing counter on each job (see OutboxJob.claim_token)."""

    dependencies = [
        ("automate", "0003_leaner_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxjob",
            name="claim_token",
            field=models.BigIntegerField(db_default=0, editable=False),
        ),
    ]
