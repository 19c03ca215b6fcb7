
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('oscar_fashion_ai', '0002_preferences'),
    ]

    operations = [
        migrations.AlterField(
            model_name='productembedding',
            name='model_version',
            field=models.CharField(blank=True, max_length=128, verbose_name='model version'),
        ),
        migrations.AlterField(
            model_name='productembedding',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('indexed', 'Indexed'), ('failed', 'Failed')], default='pending', max_length=16, verbose_name='status'),
        ),
    ]
