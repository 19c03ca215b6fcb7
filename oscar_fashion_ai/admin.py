"""Django admin: index rows (with failures) and a "Reindex selected products" action on Oscar's product admin."""

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from oscar.core.loading import get_model

from . import index
from .models import IndexRun, ProductEmbedding


@admin.action(description=_("Reindex selected products (Fashion AI)"), permissions=["change"])
def reindex_selected(modeladmin, request, queryset):
    ids = list(queryset.values_list("pk", flat=True))
    try:
        count = index.request_reindex(scope="selected", requested_by=request.user.get_username(), product_ids=ids)
    except index.BrokerUnavailable as exc:
        modeladmin.message_user(request, str(exc), level=messages.ERROR)
        return
    modeladmin.message_user(request, _("Queued %d products for reindexing.") % count, level=messages.SUCCESS)


def _extend_product_admin():
    Product = get_model("catalogue", "Product")
    base = type(admin.site._registry[Product]) if admin.site.is_registered(Product) else admin.ModelAdmin
    if getattr(base, "_fashion_ai", False):
        return

    class FashionAIProductAdmin(base):
        _fashion_ai = True
        actions = [*(base.actions or []), reindex_selected]

    if admin.site.is_registered(Product):
        admin.site.unregister(Product)
    admin.site.register(Product, FashionAIProductAdmin)


_extend_product_admin()


@admin.register(ProductEmbedding)
class ProductEmbeddingAdmin(admin.ModelAdmin):
    list_display = ("product", "status", "model_version", "error", "attempts", "date_indexed", "date_updated")
    list_filter = ("status", "model_version")
    search_fields = ("product__title", "product__upc", "error")
    raw_id_fields = ("product", "image")
    readonly_fields = ("vector", "image_checksum", "date_created", "date_updated", "date_indexed", "attempts")
    actions = ["reindex_rows"]

    @admin.action(description=_("Reindex selected rows"))
    def reindex_rows(self, request, queryset):
        reindex_selected(self, request, get_model("catalogue", "Product").objects.filter(
            pk__in=queryset.values_list("product_id", flat=True)))


@admin.register(IndexRun)
class IndexRunAdmin(admin.ModelAdmin):
    list_display = ("date_created", "scope", "products", "requested_by")
