
import django.db.models.deletion
import pgvector.django
import pgvector.django.indexes
import pgvector.django.vector
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        # The earliest catalogue migration that has Product and ProductImage, so that shops on any
        # Oscar 4.x catalogue migration can install the plugin.
        ("catalogue", "0001_initial"),
    ]

    operations = [
        # pgvector's extension must exist before the first vector column.
        pgvector.django.VectorExtension(),
        migrations.CreateModel(
            name='IndexRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('requested_by', models.CharField(blank=True, max_length=150, verbose_name='requested by')),
                ('scope', models.CharField(max_length=64, verbose_name='scope')),
                ('products', models.PositiveIntegerField(default=0, verbose_name='products')),
                ('date_created', models.DateTimeField(auto_now_add=True, verbose_name='requested')),
            ],
            options={
                'ordering': ['-date_created'],
                'get_latest_by': 'date_created',
            },
        ),
        migrations.CreateModel(
            name='ProductEmbedding',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('vector', pgvector.django.vector.VectorField(blank=True, dimensions=256, null=True)),
                ('model_version', models.CharField(blank=True, db_index=True, max_length=128, verbose_name='model version')),
                ('image_checksum', models.CharField(blank=True, max_length=40, verbose_name='image checksum (sha1)')),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('indexed', 'Indexed'), ('failed', 'Failed')], db_index=True, default='pending', max_length=16, verbose_name='status')),
                ('error', models.TextField(blank=True, verbose_name='last error')),
                ('attempts', models.PositiveIntegerField(default=0, verbose_name='attempts')),
                ('date_created', models.DateTimeField(auto_now_add=True, verbose_name='created')),
                ('date_updated', models.DateTimeField(auto_now=True, verbose_name='updated')),
                ('date_indexed', models.DateTimeField(blank=True, null=True, verbose_name='indexed')),
                ('image', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='catalogue.productimage', verbose_name='source image')),
                ('product', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='fashion_embedding', to='catalogue.product', verbose_name='product')),
            ],
            options={
                'verbose_name': 'product embedding',
                'verbose_name_plural': 'product embeddings',
                'indexes': [pgvector.django.indexes.HnswIndex(ef_construction=64, fields=['vector'], m=16, name='fashion_ai_embedding_hnsw', opclasses=['vector_cosine_ops'])],
            },
        ),
    ]
