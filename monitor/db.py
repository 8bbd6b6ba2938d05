"""Bulk database helpers of the daily job: chunks of ids, and one executemany UPDATE for many rows."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connection, models


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def update_rows(model: type[models.Model], objs: list[models.Model], fields: list[str]) -> None:
    """What QuerySet.bulk_update(objs, fields) does, as one executemany of a plain UPDATE per row.
    bulk_update builds a CASE WHEN expression per row and field, which made it the largest cost
    of the daily job after decoding, crops and inference (bench/README.md, stage breakdown)."""
    if not objs:
        return
    meta, qn = model._meta, connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    sql = (
        f"UPDATE {qn(meta.db_table)} SET {', '.join(f'{qn(f.column)} = %s' for f in columns)}"
        f" WHERE {qn(meta.pk.column)} = %s"
    )
    params = [[f.get_db_prep_save(getattr(o, f.attname), connection) for f in columns] + [o.pk] for o in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
