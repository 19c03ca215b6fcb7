from django.db import migrations, models


class Migration(migrations.Migration):
    """Multi-interest profiles. Existing profiles keep their single vector (used until their next update);
    `fashion_rebuild_preferences --all` computes every profile's interests from its events. Nullable, so that the
    previous release's code (which does not write the column) keeps working against this schema during a deploy."""

    dependencies = [
        ("oscar_fashion_ai", "0004_index_builds_adaptation"),
    ]

    operations = [
        migrations.AddField(
            model_name="customerpreference",
            name="interests",
            field=models.JSONField(blank=True, default=dict, null=True, verbose_name="interests"),
        ),
    ]
