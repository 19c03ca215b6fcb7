# Index builds (search keeps the model in use while a new model's vectors are written) and adaptation runs.

import django.db.models.deletion
import pgvector.django.indexes
import pgvector.django.vector
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalogue', '0001_initial'),
        ('oscar_fashion_ai', '0003_embedding_no_btree'),
    ]

    operations = [
        migrations.CreateModel(
            name='AdaptationRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('requested_by', models.CharField(blank=True, max_length=150, verbose_name='requested by')),
                ('state', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('installed', 'Installed'), ('kept', 'Kept the model in use'), ('failed', 'Failed')], default='queued', max_length=16, verbose_name='state')),
                ('stage', models.CharField(blank=True, max_length=200, verbose_name='stage')),
                ('progress', models.FloatField(default=0.0, verbose_name='progress (0-1)')),
                ('message', models.TextField(blank=True, verbose_name='outcome')),
                ('result', models.JSONField(blank=True, default=dict, verbose_name='measurements')),
                ('installed_version', models.CharField(blank=True, max_length=128, verbose_name='installed version')),
                ('task_id', models.CharField(blank=True, max_length=64, verbose_name='task id')),
                ('attempts', models.PositiveIntegerField(default=0, verbose_name='attempts')),
                ('date_created', models.DateTimeField(auto_now_add=True, verbose_name='requested')),
                ('date_started', models.DateTimeField(blank=True, null=True, verbose_name='started')),
                ('date_updated', models.DateTimeField(auto_now=True, verbose_name='last progress')),
                ('date_finished', models.DateTimeField(blank=True, null=True, verbose_name='finished')),
            ],
            options={
                'ordering': ['-date_created', '-pk'],
                'get_latest_by': 'date_created',
            },
        ),
        migrations.CreateModel(
            name='IndexBuild',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('version', models.CharField(max_length=128, verbose_name='model version')),
                ('weights', models.CharField(max_length=1000, verbose_name='weights file')),
                ('weights_sha256', models.CharField(max_length=64, verbose_name='weights sha256')),
                ('dim', models.PositiveIntegerField(verbose_name='dimensions')),
                ('state', models.CharField(choices=[('building', 'Building'), ('active', 'In use'), ('retired', 'Replaced'), ('abandoned', 'Abandoned')], max_length=16, verbose_name='state')),
                ('requested_by', models.CharField(blank=True, max_length=150, verbose_name='requested by')),
                ('products', models.PositiveIntegerField(default=0, verbose_name='products at start')),
                ('message', models.TextField(blank=True, verbose_name='message')),
                ('date_created', models.DateTimeField(auto_now_add=True, verbose_name='started')),
                ('date_activated', models.DateTimeField(blank=True, null=True, verbose_name='switched to')),
                ('date_finished', models.DateTimeField(blank=True, null=True, verbose_name='ended')),
            ],
            options={
                'ordering': ['-date_created', '-pk'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('state', 'active')), fields=('state',), name='fashion_one_active_index'), models.UniqueConstraint(condition=models.Q(('state', 'building')), fields=('state',), name='fashion_one_index_build')],
            },
        ),
        migrations.CreateModel(
            name='ProductEmbeddingNext',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('vector', pgvector.django.vector.VectorField(blank=True, dimensions=256, null=True)),
                ('model_version', models.CharField(blank=True, max_length=128, verbose_name='model version')),
                ('image_checksum', models.CharField(blank=True, max_length=40, verbose_name='image checksum (sha1)')),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('indexed', 'Indexed'), ('failed', 'Failed')], default='pending', max_length=16, verbose_name='status')),
                ('error', models.TextField(blank=True, verbose_name='last error')),
                ('attempts', models.PositiveIntegerField(default=0, verbose_name='attempts')),
                ('date_created', models.DateTimeField(auto_now_add=True, verbose_name='created')),
                ('date_updated', models.DateTimeField(auto_now=True, verbose_name='updated')),
                ('date_indexed', models.DateTimeField(blank=True, null=True, verbose_name='indexed')),
                ('image', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='catalogue.productimage', verbose_name='source image')),
                ('product', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='catalogue.product', verbose_name='product')),
            ],
            options={
                'verbose_name': 'product embedding (next model)',
                'verbose_name_plural': 'product embeddings (next model)',
                'indexes': [pgvector.django.indexes.HnswIndex(ef_construction=64, fields=['vector'], m=16, name='fashion_ai_embedding_next_hnsw', opclasses=['vector_cosine_ops'])],
            },
        ),
    ]
