"""How many records per namespace, state, backend and node, kept by PostgreSQL itself, so that
the counts (the UI's overview, /metrics) and a listing's total are a read of a few hundred rows
instead of a scan of every record (at 100,000 records that scan was most of those requests).

A trigger on ``sandboxes`` appends +1/-1 rows to ``sandbox_counts`` whenever a record is added,
removed, or changes one of the four keys; nothing is ever updated in place, so writers of several
admins never wait on (or deadlock over) a shared counter row. ``fold`` (the reaper-lease holder,
every round) sums the rows into one per key in a single transaction: readers see the table
before or after, and both sum to the same numbers.
"""

from __future__ import annotations

KEYS = ("owner", "state", "backend", "node_id")

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS sandbox_counts (owner TEXT, state TEXT, backend TEXT, node_id TEXT, n BIGINT NOT NULL)",
    """CREATE OR REPLACE FUNCTION sandbox_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.owner IS NOT DISTINCT FROM NEW.owner AND OLD.state IS NOT DISTINCT FROM NEW.state
     AND OLD.backend IS NOT DISTINCT FROM NEW.backend AND OLD.node_id IS NOT DISTINCT FROM NEW.node_id THEN
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO sandbox_counts VALUES (OLD.owner, OLD.state, OLD.backend, OLD.node_id, -1);
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    INSERT INTO sandbox_counts VALUES (NEW.owner, NEW.state, NEW.backend, NEW.node_id, 1);
  END IF;
  RETURN NULL;
END $$""",
    "CREATE OR REPLACE TRIGGER sandboxes_counted AFTER INSERT OR UPDATE OR DELETE ON sandboxes "
    "FOR EACH ROW EXECUTE FUNCTION sandbox_counts_apply()",
]
# A database made before the counts existed: its records counted once, as the trigger starts.
BACKFILL = ("INSERT INTO sandbox_counts SELECT owner, state, backend, node_id, COUNT(*) FROM sandboxes "
            "GROUP BY owner, state, backend, node_id")
FOLD = ("WITH gone AS (DELETE FROM sandbox_counts RETURNING owner, state, backend, node_id, n) "
        "INSERT INTO sandbox_counts SELECT owner, state, backend, node_id, SUM(n) FROM gone "
        "GROUP BY owner, state, backend, node_id HAVING SUM(n) != 0")


async def create(db) -> None:
    """Inside the schema's transaction (under its advisory lock)."""
    new = (await (await db.execute("SELECT to_regclass('sandbox_counts') IS NULL AS new")).fetchone())["new"]
    for statement in SCHEMA:
        await db.execute(statement)
    if new:
        await db.execute(BACKFILL)
