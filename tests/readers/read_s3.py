"""The lake in an S3-compatible bucket as a user sees it, through pyarrow's S3
filesystem (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).

    read_s3.py compare ENDPOINT BUCKET/PREFIX LOCAL_LAKE_DIR
        One JSON line: each side's objects (key -> SHA-256 of its bytes), its
        rows and columns read as a hive-partitioned dataset, and whether the
        two tables are equal row for row (sorted the same way).
    read_s3.py symbols ENDPOINT BUCKET/PREFIX
        One JSON line: the symbols of the dataset and its rows.
    read_s3.py overwrite ENDPOINT BUCKET/KEY
        Replaces an object with bytes that are not Parquet (behind bml's back).
"""

import hashlib
import json
import os
import sys

import pyarrow.dataset as ds
import pyarrow.fs as pafs

command, endpoint = sys.argv[1], sys.argv[2]
s3 = pafs.S3FileSystem(
    access_key=os.environ["AWS_ACCESS_KEY_ID"],
    secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    endpoint_override=endpoint,
    scheme="http",
    region="us-east-1",
)


def objects(fs, base):
    """Every file of the dataset under base: its key relative to base -> SHA-256
    (none if nothing was ever written there: a run killed before its first PUT)."""
    out = {}
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    for info in fs.get_file_info(selector):
        if info.type == pafs.FileType.File and "/futures/" in info.path:
            with fs.open_input_stream(info.path) as f:
                out[info.path[len(base) + 1 :]] = hashlib.sha256(f.read()).hexdigest()
    return out


def table(fs, base):
    """The lake under base as a hive-partitioned dataset (None if empty)."""
    if fs.get_file_info(base + "/futures/um/minute").type == pafs.FileType.NotFound:
        return None
    dataset = ds.dataset(
        base + "/futures/um/minute", filesystem=fs, format="parquet", partitioning="hive"
    )
    t = dataset.to_table()
    return t.sort_by([("symbol", "ascending"), (t.column_names[0], "ascending")])


if command == "compare":
    root, local = sys.argv[3].rstrip("/"), sys.argv[4]
    disk = pafs.LocalFileSystem()
    remote, here = table(s3, root), table(disk, local)
    print(
        json.dumps(
            {
                "s3": objects(s3, root),
                "local": objects(disk, local),
                "rows": [t.num_rows if t else 0 for t in (remote, here)],
                "columns": [t.num_columns if t else 0 for t in (remote, here)],
                "equal": remote is not None and here is not None and remote.equals(here),
            }
        )
    )
elif command == "symbols":
    t = table(s3, sys.argv[3].rstrip("/"))
    print(json.dumps({"symbols": sorted(set(t.column("symbol").to_pylist())), "rows": t.num_rows}))
elif command == "overwrite":
    with s3.open_output_stream(sys.argv[3]) as out:
        out.write(b"not parquet")
else:
    sys.exit(f"unknown command {command}")
