"""Reads a bml lake the way a user of one engine would and prints what it saw as
JSON: the engine's version, the rows, the columns, the types it gave the
partition keys, the rows `day = 1` selects, and a checksum of the closes.

    python read_lake.py ENGINE LAKE_ROOT     ENGINE: duckdb, polars, pyarrow, spark
"""
import json
import sys

KEYS = ("year", "month", "day", "hour")
engine, lake = sys.argv[1], sys.argv[2]
root = lake + "/futures/um/minute"
glob = root + "/**/*.parquet"


def duckdb_read():
    import duckdb

    con = duckdb.connect()
    # The README's recipe: DuckDB reads zero-padded keys ('03') as VARCHAR
    # unless told their types.
    rel = (f"read_parquet('{glob}', hive_partitioning = true, hive_types = "
           "{'year': BIGINT, 'month': BIGINT, 'day': BIGINT, 'hour': BIGINT})")
    types = dict(con.execute(f"select column_name, column_type from (describe select * from {rel})").fetchall())
    rows, closes = con.execute(f"select count(*), sum(close) from {rel}").fetchone()
    day_one = con.execute(f"select count(*) from {rel} where day = 1").fetchone()[0]
    bare = f"read_parquet('{glob}', hive_partitioning = true)"
    bare_types = dict(con.execute(f"select column_name, column_type from (describe select * from {bare})").fetchall())
    return {"version": duckdb.__version__, "rows": rows, "columns": len(types),
            "keys": [types[k] for k in KEYS], "day_one": day_one, "close_sum": closes,
            "keys_without_recipe": [bare_types[k] for k in KEYS]}


def polars_read():
    import polars as pl

    frame = pl.read_parquet(glob, hive_partitioning=True)
    return {"version": pl.__version__, "rows": frame.height, "columns": frame.width,
            "keys": [str(frame.schema[k]) for k in KEYS],
            "day_one": frame.filter(pl.col("day") == 1).height,
            "close_sum": frame["close"].sum()}


def pyarrow_read():
    import pyarrow
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    data = ds.dataset(root, format="parquet", partitioning="hive")
    table = data.to_table()
    return {"version": pyarrow.__version__, "rows": table.num_rows, "columns": table.num_columns,
            "keys": [str(table.schema.field(k).type) for k in KEYS],
            "day_one": data.to_table(filter=ds.field("day") == 1).num_rows,
            "close_sum": pc.sum(table["close"]).as_py()}


def spark_read():
    import pyspark
    from pyspark.sql import SparkSession, functions as F

    spark = (SparkSession.builder.master("local[1]").appName("bml-read-lake")
             .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    frame = spark.read.parquet(root)
    types = dict(frame.dtypes)
    rows = frame.count()
    closes = frame.agg(F.sum("close")).first()[0]
    day_one = frame.where(F.col("day") == 1).count()
    spark.stop()
    return {"version": pyspark.__version__, "rows": rows, "columns": len(types),
            "keys": [types[k] for k in KEYS], "day_one": day_one, "close_sum": closes}


print(json.dumps({"duckdb": duckdb_read, "polars": polars_read, "pyarrow": pyarrow_read,
                  "spark": spark_read}[engine]()))
