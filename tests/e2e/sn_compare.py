"""Compare what two runs of the service left in ServiceNow, record by record and field by field."""

from __future__ import annotations

#: The ServiceNow tables the default mapping writes, each with the field that names its Genesys entity
#: (the transform map's coalesce field): one interaction per conversation, presence per user, stats per queue.
TABLES = {
    "interaction": "correlation_id",
    "u_genesys_presence": "u_user_id",
    "u_genesys_queue_stats": "u_queue_id",
}

#: Fields that differ between two runs of the same world by nature, not by what Genesys said, and why.
PER_RUN_FIELDS = {
    "sys_id": "a random id the instance gives each record",
    "number": "the instance numbers interactions in the order it creates them (INT0010001, ...)",
    "sys_created_on": "when the record was created: the wall-clock time of the delivery",
    "sys_updated_on": "when it was last written: the wall-clock time of the delivery",
    "sys_mod_count": "how many writes changed it: a run that missed events and back-filled their outcome "
    "writes fewer intermediate states",
    "received_at": "the interaction's u_received_at: when the service received (or back-filled) the event",
    "u_received_at": "presence: when the service received (or back-filled) the event",
    "u_observed_at": "queue stats: when the service received (or back-filled) the observation",
}


def keyed(table: str, records: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """The table's records by their entity id; a second record for one entity is an error."""
    key_field = TABLES[table]
    out: dict[str, dict[str, str]] = {}
    for record in records:
        key = record.get(key_field, "")
        assert key, f"{table}: a record without {key_field}: {record}"
        assert key not in out, f"{table}: two records for {key_field}={key}"
        out[key] = record
    return out


def differences(
    table: str, expected: dict[str, dict[str, str]], actual: dict[str, dict[str, str]]
) -> list[str]:
    """Every way ``actual`` differs from ``expected`` (the fields of :data:`PER_RUN_FIELDS` aside), one line
    each: entities missing or extra, then fields that differ."""
    lines = [f"{table}: missing {key}" for key in sorted(set(expected) - set(actual))]
    lines += [f"{table}: unexpected {key}" for key in sorted(set(actual) - set(expected))]
    for key in sorted(set(expected) & set(actual)):
        want, got = expected[key], actual[key]
        for name in sorted((set(want) | set(got)) - set(PER_RUN_FIELDS)):
            if want.get(name) != got.get(name):
                lines.append(f"{table} {key}: {name} = {got.get(name)!r}, clean run {want.get(name)!r}")
    return lines
