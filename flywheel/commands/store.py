"""`flywheel store`: create or update the store's schema (`migrate`) and show what it holds (`stats`)."""
import time

from rich.table import Table

from flywheel.console import err
from flywheel.feature_store.schema import migrations, tables
from flywheel.wiring import feature_store_for


def register(sub) -> None:
    p = sub.add_parser("store", help="the feature and feedback store: migrate its schema, show stats")
    commands = p.add_subparsers(dest="store_command", metavar="SUBCOMMAND")
    commands.required = True
    migrate = commands.add_parser(
        "migrate", help="create the keyspace/tables that are missing (safe to run again)",
        description="Applies the CQL files under feature_store/cql that this store has not applied yet, "
                    "in order, and records them in schema_migrations. On Cassandra the keyspace is created "
                    "with the configured replication; the embedded SQLite store derives the same tables.")
    migrate.set_defaults(handler=run_migrate)
    stats = commands.add_parser("stats", help="backend, applied migrations and (embedded) rows per table")
    stats.add_argument("--purge", action="store_true", help="embedded: delete expired rows first")
    stats.set_defaults(handler=run_stats)


def run_migrate(args, config) -> int:
    with feature_store_for(config) as store:
        store.migrate()
        _print_migrations(store)
    return 0


def _print_migrations(store) -> None:
    applied = store.applied_migrations()
    table = Table("migration", "applied at (UTC)", title=f"{store!r}: {len(tables())} tables")
    for m in migrations():
        at = applied.get(m.name)
        table.add_row(m.name, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at / 1000)) if at else "not applied")
    err.print(table)


def run_stats(args, config) -> int:
    with feature_store_for(config) as store:
        _print_migrations(store)
        if args.purge and hasattr(store, "purge_expired"):
            err.print(f"purged {store.purge_expired():,} expired row(s)")
        if hasattr(store, "counts"):    # Cassandra has no cheap row count (it is a full scan)
            table = Table("table", "rows", "partition key", "clustering")
            for name, count in store.counts().items():
                t = tables()[name]
                table.add_row(name, f"{count:,}", ", ".join(t.partition_key), ", ".join(t.clustering))
            err.print(table)
    return 0
