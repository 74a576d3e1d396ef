"""Plain SQL for the few statements a worker runs for every event and every batch.

Building a query through the ORM (cloning querysets, resolving lookups, compiling the
WHERE tree) costs a worker more CPU than the database spends running it: 0.6 to 1.2 ms
against 0.2 ms for the same statement on a bare cursor, on the benchmark's machine. An
event to one hook runs five of them, so the ORM was most of its work before its request.

A :class:`Table` writes those statements from the model's own metadata (its table, its
columns, the backend's and the fields' converters and preparations) once per model and
database connection, and runs them on Django's cursor. Transactions, the router's choice
of database and query logging (``CaptureQueriesContext`` included) work as for the ORM,
and a custom hook model (``HOOK_CUSTOM_MODEL``) is read like ``rest_hooks.Hook``.

It knows four lookups (``exact``, ``in``, ``lte``, ``gt``) and nothing of relations:
whatever needs more stays with the ORM, which is the right tool everywhere else.

A transaction that reads before it writes is opened with :func:`write_transaction`, which
on SQLite takes the write lock at its BEGIN.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from django.db import connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["Expression", "Table", "write_transaction"]

#: The converters of one column, and the column they are given.
Converters = tuple[list[Any], Any]

_OPERATORS = {"exact": "=", "lte": "<=", "gt": ">"}

# Per thread, and rebuilt for a new connection object, because the converters are the
# connection's own methods.
_local = threading.local()


@contextlib.contextmanager
def write_transaction(using: str) -> Iterator[None]:
    """``transaction.atomic`` for a transaction that reads, then writes.

    On SQLite it begins with ``BEGIN IMMEDIATE`` whatever the database's
    ``transaction_mode``: the write lock is taken up front, waiting for it as long as the
    connection's ``timeout`` says. Django's default, a deferred BEGIN, takes it at the
    first write, and SQLite answers that upgrade with "database is locked" at once, with
    no wait, whenever another connection writes meanwhile (waiting could deadlock, and the
    rows read may be stale). Inside another transaction it is a savepoint, as ``atomic``.
    """
    connection = connections[using]
    with _lock_at_begin(connection), transaction.atomic(using=using):
        yield


@contextlib.contextmanager
def _lock_at_begin(connection: Any) -> Iterator[None]:
    """SQLite's transactions begun in the block take the write lock at their BEGIN."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        yield
        return
    # Django reads the mode as it begins a transaction, and sets it again at each connect.
    connection.ensure_connection()
    configured = connection.transaction_mode
    if configured != "EXCLUSIVE":  # which takes the lock up front too
        connection.transaction_mode = "IMMEDIATE"
    try:
        yield
    finally:
        connection.transaction_mode = configured


class Table:
    """The statements of one model's table on one database connection."""

    @classmethod
    def of(cls, model: type[models.Model], using: str) -> Table:
        connection = connections[using]
        tables: dict[tuple[type[models.Model], str], Table] = _local.__dict__.setdefault(
            "tables", {}
        )
        table = tables.get((model, using))
        if table is None or table.connection is not connection:
            table = tables[(model, using)] = cls(model, connection, using)
        return table

    def __init__(
        self, model: type[models.Model], connection: BaseDatabaseWrapper, using: str
    ) -> None:
        self.model = model
        self.connection = connection
        self.using = using
        self.quote = connection.ops.quote_name
        self.name = self.quote(model._meta.db_table)
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [field.attname for field in self.fields]
        self.columns = ", ".join(self._column(field) for field in self.fields)
        self.converters = [self._converters(field) for field in self.fields]

    def select(
        self,
        where: Mapping[str, Any],
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """Model instances of the rows that match, as ``QuerySet`` would make them."""
        sql, params = self._select(self.columns, where, order_by, limit)
        return self._instances(self._fetch(sql, params, self.converters))

    def in_bulk(self, pks: Iterable[Any]) -> dict[Any, Any]:
        """The instances of these primary keys, by primary key, like ``QuerySet.in_bulk``."""
        return {obj.pk: obj for obj in self.select({"pk__in": list(pks)})}

    def values(
        self,
        names: Sequence[str],
        where: Mapping[str, Any],
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[Any, ...]]:
        """Tuples of these fields of the rows that match, like ``values_list``."""
        columns, converters = self._columns(names)
        return self._fetch(*self._select(columns, where, order_by, limit), converters)

    def update(self, changes: Mapping[str, Any], where: Mapping[str, Any]) -> int:
        """Set fields of the rows that match; returns how many rows changed.

        A value may be raw SQL given as :class:`Expression`.
        """
        assignments, params = self._set(changes)
        condition, condition_params = self._where(where)
        sql = f"UPDATE {self.name} SET {assignments} WHERE {condition}"  # noqa: S608
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params + condition_params)
            return int(cursor.rowcount)

    def claim(
        self,
        where: Mapping[str, Any],
        changes: Mapping[str, Any],
        *,
        order_by: str | None = None,
        limit: int | None = None,
        names: Sequence[str] | None = None,
    ) -> list[Any]:
        """Make ``changes`` to the rows that match and that no other transaction holds;
        returns them as they are after it, in no particular order: model instances, or
        with ``names`` tuples of these fields (as ``values``).

        How a worker takes work others may be taking too: rows another transaction has
        locked are passed over, not waited for (SKIP LOCKED, where the database has it;
        SQLite has one writer at a time). ``order_by`` and ``limit`` choose the rows.
        Where the database returns rows from an UPDATE (PostgreSQL; SQLite from 3.35) it
        is one statement, atomic on its own: no BEGIN and no COMMIT to wait for. The rows
        are chosen in a MATERIALIZED WITH query, run once: as a subquery of the UPDATE
        PostgreSQL may run the choice again for each row it updates, and its LIMIT, past
        the rows the UPDATE has changed already (a lock skips them), takes more. Elsewhere,
        a transaction that locks the rows, changes them and reads them back.
        """
        pk = self._column(self._field("pk"))
        chosen, params = self._select(pk, where, order_by, limit, lock=True)
        if not self._returns_from_update():
            with write_transaction(self.using):
                pks = [row[0] for row in self._fetch(chosen, params, [])]
                if not pks:
                    return []
                self.update(changes, {"pk__in": pks})
                return (
                    self.values(names, {"pk__in": pks}) if names else self.select({"pk__in": pks})
                )
        columns, converters = self._columns(names) if names else (self.columns, self.converters)
        assignments, set_params = self._set(changes)
        sql = (
            f"WITH chosen AS MATERIALIZED ({chosen}) "  # noqa: S608 (names, not input)
            f"UPDATE {self.name} SET {assignments} "
            f"WHERE {pk} IN (SELECT * FROM chosen) RETURNING {columns}"
        )
        rows = self._fetch(sql, params + set_params, converters)
        return rows if names else self._instances(rows)

    def save(self, objs: Sequence[models.Model], names: Sequence[str]) -> None:
        """Write these fields of these instances to their rows (by primary key).

        ``bulk_update`` would build a CASE expression per row and field, which costs more
        than the requests whose results it records. One row gets a plain UPDATE. More get,
        on PostgreSQL, one UPDATE ... FROM UNNEST, one array a column, as Django's
        ``bulk_create`` inserts: one statement to plan, and a quarter of the server's CPU
        of an UPDATE a row (for one row it costs more than the plain UPDATE); on other
        databases an ``executemany`` of the plain UPDATE, in one transaction.
        """
        pk = self.model._meta.pk
        assert pk is not None
        fields = [self._field(name) for name in names]
        rows = [
            [self._prep_save(field, getattr(obj, field.attname)) for field in fields]
            + [pk.get_db_prep_value(obj.pk, self.connection)]
            for obj in objs
        ]
        if not rows:
            return
        columns = [self.quote(str(field.column)) for field in fields]
        key = self.quote(str(pk.column))
        one_row = "UPDATE {} SET {} WHERE {} = %s".format(  # noqa: S608 (names, not input)
            self.name, ", ".join(f"{column} = %s" for column in columns), key
        )
        if len(rows) == 1:  # a statement of its own is atomic: no BEGIN, no COMMIT to wait for
            with self.connection.cursor() as cursor:
                cursor.execute(one_row, rows[0])
        elif self.connection.vendor == "postgresql":
            arrays = [self._array(field) for field in [*fields, pk]]
            sets = ", ".join(f"{column} = new.{column}" for column in columns)
            sql = (
                f"UPDATE {self.name} SET {sets} "  # noqa: S608 (names, not input)
                f"FROM UNNEST({', '.join(arrays)}) AS new ({', '.join([*columns, key])}) "
                f"WHERE {self.name}.{key} = new.{key}"
            )
            with self.connection.cursor() as cursor:
                cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
        else:
            with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
                cursor.executemany(one_row, rows)

    def insert(self, varying: Mapping[str, Sequence[Any]], same: Mapping[str, Any]) -> int:
        """INSERT new rows that differ only in the ``varying`` fields; how many.

        ``varying`` gives each of its fields one value a row (the primary key among them:
        none is read back); every other field is what a new instance made with ``same``
        saves (``same``'s value, the field's default, ``auto_now``), the same in every
        row. A fan-out's thousands of deliveries differ in their id and
        hook alone, so no model instance is made for them: those were most of a chunk's
        memory (5,000 instances, about 10 MiB, held at once by each thread fanning out).
        On PostgreSQL this is one INSERT ... SELECT FROM UNNEST, one array a varying
        column and one parameter a constant one; elsewhere INSERTs of as many rows as
        the database takes. Stored as ``bulk_create`` stores it.
        """
        count = len(next(iter(varying.values())))
        if not count:
            return 0
        each = {self._field(name): values for name, values in varying.items()}
        template = self.model(**same)  # what bulk_create would save of every other field
        columns: dict[Any, list[Any]] = {}  # a varying field's prepared values
        constants: dict[Any, Any] = {}  # another field's prepared value
        for field in self.fields:
            if field in each:
                columns[field] = [self._prep_save(field, v) for v in each[field]]
            else:
                constants[field] = self._prep_save(field, field.pre_save(template, True))
        names = ", ".join(self.quote(str(field.column)) for field in self.fields)
        into = f"INSERT INTO {self.name} ({names}) "
        one_statement = count == 1 or self.connection.vendor == "postgresql"
        with (
            # A statement of its own is atomic: no BEGIN, no COMMIT to wait for (one-hook
            # events). Several are one transaction.
            contextlib.nullcontext()
            if one_statement
            else transaction.atomic(using=self.using, savepoint=False),
            self.connection.cursor() as cursor,
        ):
            if count > 1 and self.connection.vendor == "postgresql":
                position = {field: i for i, field in enumerate(columns)}
                selected = ", ".join(
                    f"u.c{position[f]}" if f in position else self._typed("%s", f)
                    for f in self.fields
                )
                unnest = ", ".join(self._array(f) for f in columns)
                alias = ", ".join(f"c{i}" for i in position.values())
                sql = f"{into}SELECT {selected} FROM UNNEST({unnest}) AS u({alias})"  # noqa: S608
                # The constants' parameters come first: they are in the SELECT list.
                cursor.execute(sql, [*constants.values(), *columns.values()])
            else:
                each_field = [
                    columns[f] if f in columns else itertools.repeat(constants[f], count)
                    for f in self.fields
                ]
                rows = list(zip(*each_field, strict=True))
                size = max(1, self.connection.ops.bulk_batch_size(self.fields, rows))
                one = "({})".format(", ".join(["%s"] * len(self.fields)))
                for start in range(0, count, size):
                    batch = rows[start : start + size]
                    values = ", ".join([one] * len(batch))
                    cursor.execute(f"{into}VALUES {values}", [v for row in batch for v in row])
        return count

    # -- building blocks -------------------------------------------------------------------

    def _set(self, changes: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """An UPDATE's assignments; a value may be raw SQL given as :class:`Expression`."""
        assignments: list[str] = []
        params: list[Any] = []
        for name, value in changes.items():
            field = self._field(name)
            column = self.quote(field.column)  # SET takes the column unqualified
            if isinstance(value, Expression):
                assignments.append(f"{column} = {value.sql.format(column)}")
            else:
                assignments.append(f"{column} = %s")
                params.append(self._prep_save(field, value))
        return ", ".join(assignments), params

    def _array(self, field: Any) -> str:
        """A placeholder for an array of the field's values."""
        return self._typed("%s", field) + "[]"

    def _typed(self, sql: str, field: Any) -> str:
        """``sql`` cast to the column's type without its length (varchar, not
        varchar(16)), so that nothing is truncated."""
        return f"{sql}::{field.db_type(self.connection).split('(')[0]}"

    def _prep_save(self, field: Any, value: Any) -> Any:
        return field.get_db_prep_save(value, self.connection)

    def _columns(self, names: Sequence[str]) -> tuple[str, list[Converters]]:
        """The columns of these fields, for a SELECT or a RETURNING, and their converters."""
        fields = [self._field(name) for name in names]
        columns = ", ".join(self._column(field) for field in fields)
        return columns, [self._converters(field) for field in fields]

    def _select(
        self,
        columns: str,
        where: Mapping[str, Any],
        order_by: str | None,
        limit: int | None,
        lock: bool = False,
    ) -> tuple[str, list[Any]]:
        """A SELECT and its parameters; ``lock``: FOR UPDATE SKIP LOCKED where the database
        has it."""
        condition, params = self._where(where)
        sql = f"SELECT {columns} FROM {self.name} WHERE {condition}"  # noqa: S608
        if order_by is not None:
            sql += f" ORDER BY {self._column(self._field(order_by))}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if lock and self.connection.features.has_select_for_update_skip_locked:
            sql += " FOR UPDATE SKIP LOCKED"
        return sql, params

    def _fetch(
        self, sql: str, params: list[Any], converters: list[Converters]
    ) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not any(chain for chain, _ in converters):
            return [tuple(row) for row in rows]
        return [self._convert(row, converters) for row in rows]

    def _instances(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        return [self.model.from_db(self.using, self.attnames, row) for row in rows]

    def _returns_from_update(self) -> bool:
        # SQLite's RETURNING came with 3.35, as its INSERT ... RETURNING, which Django
        # knows of; MySQL has none, MariaDB none on an UPDATE.
        features = self.connection.features
        return self.connection.vendor == "postgresql" or (
            self.connection.vendor == "sqlite" and features.can_return_columns_from_insert
        )

    def _convert(self, row: Sequence[Any], converters: list[Converters]) -> tuple[Any, ...]:
        values = list(row)
        for i, (chain, col) in enumerate(converters):
            for converter in chain:
                values[i] = converter(values[i], col, self.connection)
        return tuple(values)

    def _where(self, conditions: Mapping[str, Any]) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        for key, value in conditions.items():
            name, _, lookup = key.partition("__")
            field = self._field(name)
            column = self._column(field)
            if lookup == "in":
                values = [self._prep(field, v) for v in value]
                if not values:
                    parts.append("1 = 0")  # IN () is not SQL
                    continue
                parts.append(f"{column} IN ({', '.join(['%s'] * len(values))})")
                params.extend(values)
            elif value is None and not lookup:
                parts.append(f"{column} IS NULL")  # = NULL would match nothing
            else:
                parts.append(f"{column} {_OPERATORS[lookup or 'exact']} %s")
                params.append(self._prep(field, value))
        return " AND ".join(parts) or "1 = 1", params

    def _prep(self, field: Any, value: Any) -> Any:
        return field.get_db_prep_value(value, self.connection, prepared=False)

    def _field(self, name: str) -> Any:
        meta = self.model._meta
        return meta.pk if name == "pk" else meta.get_field(name)

    def _column(self, field: Any) -> str:
        return f"{self.name}.{self.quote(field.column)}"

    def _converters(self, field: Any) -> Converters:
        """What Django's SQL compiler applies to the column's values, and the column."""
        col = field.get_col(self.model._meta.db_table)
        chain = self.connection.ops.get_db_converters(col) + col.get_db_converters(self.connection)
        return chain, col


class Expression:
    """Raw SQL for an UPDATE's new value; ``{}`` stands for the column itself."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
