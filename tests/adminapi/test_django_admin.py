"""The Django admin: config edits go through config_update (validated, versioned, audited with
the staff user); orders, order events, audit, decisions and the Telegram outbox are read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from infra.models import TelegramOutbox
from tests.adminapi.conftest import audit_count, config_rows, make_decision, make_event, make_order
from trading.config_schema import HALT_KEY
from trading.models import AuditLog, Order, OrderEvent, SystemConfig

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("dana", "dana@example.invalid", PASSWORD)
    # a real login through the admin's login form
    response = client.post("/django-admin/login/?next=/django-admin/",
                           {"username": "dana", "password": PASSWORD, "next": "/django-admin/"})
    assert response.status_code == 302 and response["Location"] == "/django-admin/"
    return user


def test_the_admin_needs_a_login(client):
    response = client.get("/django-admin/trading/systemconfig/")
    assert response.status_code == 302 and "/django-admin/login/" in response["Location"]


def test_staff_adding_a_config_key_writes_it_through_the_audited_service(client, staff):
    # when dana sets risk_per_trade through the admin's add form
    response = client.post("/django-admin/trading/systemconfig/add/", {
        "key": "risk_per_trade", "value": '"0.01"', "reason_code": "TUNE_RISK", "reason": "more risk on trend days",
    })
    # then the value is stored at version 1 ...
    assert response.status_code == 302, response.content.decode()[:3000]
    assert config_rows() == {"risk_per_trade": ("0.01", 1)}
    assert SystemConfig.objects.get(key="risk_per_trade").updated_by == "dana"
    # ... and exactly one audit row names dana, the admin as source, and the before/after
    row = AuditLog.objects.get()
    assert (row.actor, row.source, row.action, row.reason_code, row.reason) == (
        "dana", "django-admin", "config.update", "TUNE_RISK", "more risk on trend days")
    assert row.before == {"risk_per_trade": "0.005"} and row.after == {"risk_per_trade": "0.01"}
    assert row.trace_id


def test_staff_changing_a_config_value_bumps_its_version_and_audits_before_after(client, staff):
    SystemConfig.objects.create(key="timeframe", value="15m", version=3)
    response = client.post("/django-admin/trading/systemconfig/timeframe/change/", {
        "value": '"1h"', "reason_code": "SLOWER", "reason": "less noise",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    assert config_rows() == {"timeframe": ("1h", 4)}
    row = AuditLog.objects.get()
    assert (row.before, row.after, row.actor, row.source) == ({"timeframe": "15m"}, {"timeframe": "1h"}, "dana",
                                                              "django-admin")


def test_an_invalid_value_is_refused_by_the_form_and_nothing_is_written(client, staff):
    SystemConfig.objects.create(key="universe", value=["BTC/USDT"], version=1)
    response = client.post("/django-admin/trading/systemconfig/universe/change/", {
        "value": '["BTC/USDT", "btc"]', "reason_code": "TUNE", "reason": "x",
    })
    assert response.status_code == 200   # the form again, with the error
    assert "is not a unified symbol" in response.content.decode()
    assert config_rows() == {"universe": (["BTC/USDT"], 1)} and audit_count() == 0


def test_a_config_edit_without_reason_code_and_reason_is_refused(client, staff):
    response = client.post("/django-admin/trading/systemconfig/add/", {"key": "atr_period", "value": "10"})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert set(form.errors) == {"reason_code", "reason"}
    assert config_rows() == {} and audit_count() == 0


def test_config_rows_cannot_be_deleted_and_the_halt_row_cannot_be_edited(client, staff):
    SystemConfig.objects.create(key="timeframe", value="1h")
    SystemConfig.objects.create(key=HALT_KEY, value={"halted": True})
    assert client.get("/django-admin/trading/systemconfig/timeframe/delete/").status_code == 403
    response = client.post(f"/django-admin/trading/systemconfig/{HALT_KEY}/change/",
                           {"value": '{"halted": false}', "reason_code": "X_Y", "reason": "x"})
    assert response.status_code == 403
    assert SystemConfig.objects.get(key=HALT_KEY).value == {"halted": True} and audit_count() == 0


def test_orders_are_read_only_in_the_admin(client, staff):
    order = make_order(client_order_id="AS-adm-1")
    make_event(order, "CREATED")
    # the list and the detail page are viewable, with the events inline
    assert client.get("/django-admin/trading/order/").status_code == 200
    page = client.get(f"/django-admin/trading/order/{order.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "AS-adm-1" in html and "CREATED" in html
    assert 'name="_save"' not in html      # no save button: read-only
    # nothing can be added, changed or deleted
    assert client.get("/django-admin/trading/order/add/").status_code == 403
    response = client.post(f"/django-admin/trading/order/{order.pk}/change/", {"status": "filled", "symbol": "X"})
    assert response.status_code == 403
    assert client.post(f"/django-admin/trading/order/{order.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = client.post("/django-admin/trading/order/", {"action": "delete_selected", "_selected_action": [order.pk],
                                                        "post": "yes"})
    assert Order.objects.get(pk=order.pk).status == "pending"
    assert bulk.status_code in (200, 302) and Order.objects.filter(pk=order.pk).exists()


def test_order_events_can_never_be_edited_or_deleted(client, staff):
    event = make_event(make_order(), "CREATED")
    assert client.get(f"/django-admin/trading/orderevent/{event.pk}/change/").status_code == 200
    assert client.get("/django-admin/trading/orderevent/add/").status_code == 403
    assert client.post(f"/django-admin/trading/orderevent/{event.pk}/change/",
                       {"event_type": "FILLED"}).status_code == 403
    assert client.post(f"/django-admin/trading/orderevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert OrderEvent.objects.get(pk=event.pk).event_type == "CREATED"


@pytest.mark.parametrize("make", ["audit", "decision", "outbox"])
def test_audit_decisions_and_telegram_outbox_are_read_only(client, staff, make):
    if make == "audit":
        obj, base = AuditLog.objects.create(actor="a", source="api", action="x", reason_code="X_Y",
                                            trace_id="t"), "/django-admin/trading/auditlog/"
    elif make == "decision":
        obj, base = make_decision(), "/django-admin/strategy/strategydecision/"
    else:
        obj, base = TelegramOutbox.objects.create(text="hi", trace_id="t"), "/django-admin/infra/telegramoutbox/"
    assert client.get(base).status_code == 200
    assert client.get(f"{base}{obj.pk}/change/").status_code == 200
    assert client.get(f"{base}add/").status_code == 403
    assert client.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()
