
import django.db.models.deletion
import pgvector.django.vector
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalogue', '0001_initial'),
        ('oscar_fashion_ai', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='CustomerPreference',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('shopper_key', models.CharField(blank=True, max_length=64, null=True, unique=True, verbose_name='anonymous shopper key')),
                ('vector', pgvector.django.vector.VectorField(blank=True, dimensions=256, null=True)),
                ('weight', models.FloatField(default=0.0, verbose_name='decayed weight sum')),
                ('reference_time', models.DateTimeField(blank=True, null=True, verbose_name='decay reference time')),
                ('model_version', models.CharField(blank=True, max_length=128, verbose_name='model version')),
                ('event_count', models.PositiveIntegerField(default=0, verbose_name='events')),
                ('date_updated', models.DateTimeField(auto_now=True, verbose_name='updated')),
                ('user', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='fashion_preference', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'constraints': [models.CheckConstraint(condition=models.Q(('user__isnull', False), ('shopper_key__isnull', False), _connector='OR'), name='fashion_pref_has_owner')],
            },
        ),
        migrations.CreateModel(
            name='PreferenceEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('shopper_key', models.CharField(blank=True, db_index=True, max_length=64, verbose_name='anonymous shopper key')),
                ('kind', models.CharField(choices=[('view', 'Viewed'), ('basket', 'Added to basket'), ('order', 'Ordered')], max_length=16, verbose_name='kind')),
                ('weight', models.FloatField(verbose_name='weight')),
                ('applied', models.BooleanField(db_index=True, default=False, verbose_name='applied to the preference vector')),
                ('date_created', models.DateTimeField(db_index=True, verbose_name='time')),
                ('product', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='catalogue.product')),
                ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='fashion_events', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['date_created', 'pk'],
                'indexes': [models.Index(fields=['user', 'applied'], name='oscar_fashi_user_id_fb3044_idx'), models.Index(fields=['shopper_key', 'applied'], name='oscar_fashi_shopper_5cdb89_idx')],
            },
        ),
    ]
