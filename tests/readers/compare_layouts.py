"""Reads two bml lakes, one in the hour layout and one in the day layout, with
DuckDB and pyarrow as a user would (hive partitioning), and prints one JSON
line: per engine, the rows of each and whether they are equal row for row
(the 58 columns and the symbol, sorted by symbol and timestamp); and the
Parquet files of each.

    python compare_layouts.py HOUR_LAKE DAY_LAKE
"""
import glob
import json
import sys

hour_lake, day_lake = sys.argv[1], sys.argv[2]


def root(lake):
    return lake + "/futures/um/minute"


def files(lake):
    return len(glob.glob(root(lake) + "/**/*.parquet", recursive=True))


def duckdb_table(lake):
    import duckdb

    keys = ["year", "month", "day"] + (["hour"] if glob.glob(root(lake) + "/*/*/*/*/hour=*/*.parquet") else [])
    types = ", ".join(f"'{k}': BIGINT" for k in keys)
    rel = (f"read_parquet('{root(lake)}/**/*.parquet', hive_partitioning = true, "
           f"hive_types = {{{types}}})")
    con = duckdb.connect()
    return con.sql(f"select * exclude ({', '.join(keys)}) from {rel} "
                   "order by symbol, timestamp").to_arrow_table()


def pyarrow_table(lake):
    import pyarrow.dataset as ds

    table = ds.dataset(root(lake), format="parquet", partitioning="hive").to_table()
    table = table.drop_columns([k for k in ("year", "month", "day", "hour") if k in table.column_names])
    return table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])


out = {"files": [files(hour_lake), files(day_lake)]}
for name, read in (("duckdb", duckdb_table), ("pyarrow", pyarrow_table)):
    hour, day = read(hour_lake), read(day_lake)
    out[name] = {"rows": [hour.num_rows, day.num_rows], "columns": [hour.num_columns, day.num_columns],
                 "equal": hour.equals(day)}
print(json.dumps(out))
