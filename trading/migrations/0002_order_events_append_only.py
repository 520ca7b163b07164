"""``order_events`` is append-only, enforced by PostgreSQL itself (ARCHITECTURE invariant 3).

Any UPDATE, DELETE or TRUNCATE — from Django, psql, or a buggy script — is rejected, so the
audit trail cannot be rewritten by anything short of dropping the trigger in a migration.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION order_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'order_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER order_events_no_update_delete
    BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION order_events_append_only();

CREATE TRIGGER order_events_no_truncate
    BEFORE TRUNCATE ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION order_events_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS order_events_no_truncate ON order_events;
DROP TRIGGER IF EXISTS order_events_no_update_delete ON order_events;
DROP FUNCTION IF EXISTS order_events_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("trading", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
