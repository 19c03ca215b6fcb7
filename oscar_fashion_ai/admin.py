"""Django admin: index rows (with failures) and a "Reindex selected products" action on Oscar's product admin."""

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from oscar.core.loading import get_model

from .indexing import index
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


def add_reindex_action(site=None):
    """Add "Reindex selected products" to the product admin registered by the shop's catalogue app.

    Nothing is (re-)registered: the action is added to the registered ``ModelAdmin`` itself, so the result does
    not depend on the order of INSTALLED_APPS. When this module is imported before the catalogue app's admin
    module (the plugin listed first), that module is imported here first, so its ``register`` runs as it would
    have; Django's autodiscovery later finds it already imported. Without a registered product admin (a shop
    that removed it) this does nothing. Returns the product ``ModelAdmin`` or None.
    """
    from importlib import import_module
    from importlib.util import find_spec

    site = site or admin.site
    Product = get_model("catalogue", "Product")
    catalogue = Product._meta.app_config.name
    if not site.is_registered(Product) and find_spec(f"{catalogue}.admin") is not None:
        import_module(f"{catalogue}.admin")
    model_admin = site._registry.get(Product)
    if model_admin is None:
        return None
    actions = list(model_admin.actions or [])
    if reindex_selected not in actions:
        model_admin.actions = [*actions, reindex_selected]
    return model_admin


add_reindex_action()


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
        reindex_selected(
            self,
            request,
            get_model("catalogue", "Product").objects.filter(pk__in=queryset.values_list("product_id", flat=True)),
        )


@admin.register(IndexRun)
class IndexRunAdmin(admin.ModelAdmin):
    list_display = ("date_created", "scope", "products", "requested_by")
