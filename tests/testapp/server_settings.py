"""Settings of the uvicorn process the webhook tests start: tests.settings, plus the automate URLs and
webhook sources. The database is the test database (AUTOMATE_TEST_WORKER_DATABASE_URL, see tests.settings)."""

from tests.settings import *  # noqa: F403
from tests.settings import DJANGO_AUTOMATE as _BASE

ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "tests.testapp.urls"
DJANGO_AUTOMATE = {
    **_BASE,
    "WEBHOOKS": {
        "sources": {
            "shop": {"secret": "$secret:SHOP_WEBHOOK", "event_type": "shop.webhook"},
            "crm": {"secret": "$secret:CRM_WEBHOOK", "event_type": "crm.contact"},
            "broken": {"secret": "$secret:WEBHOOK_SECRET_NOBODY_SET", "event_type": "broken.webhook"},
        },
        "replay_window_seconds": 60,
        "max_body_bytes": 4096,
    },
}
