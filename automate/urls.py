"""``path("automate/", include("automate.urls"))``: signed webhooks (and the other Django-side views)."""

from django.urls import path

from .webhooks.views import receive

app_name = "automate"

urlpatterns = [
    path("webhooks/<str:source>/", receive, name="webhook"),
]
