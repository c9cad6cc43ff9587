"""``path("automate/", include("automate.urls"))``: signed webhooks (and the other Django-side views)."""

from django.urls import path

from .views.metrics import metrics_view
from .webhooks.views import receive

app_name = "automate"

urlpatterns = [
    path("webhooks/<str:source>/", receive, name="webhook"),
    path("metrics", metrics_view, name="metrics"),
]
