from demo import views
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("automate/", include("automate.urls")),  # signed webhooks: POST automate/webhooks/<source>/
    path("events/sync/", views.emit_sync),
    path("events/async/", views.emit_async),
    path("orders/", views.place_order),
]
