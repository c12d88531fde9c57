"""The lake in an S3-compatible bucket read back as a user would, with pyarrow's
S3 filesystem, beside the same lake on disk.

    read_s3.py ENDPOINT BUCKET/PREFIX LOCAL_LAKE_DIR

Prints one JSON line: each side's objects (key -> SHA-256 of its bytes), its
rows and columns read as a hive-partitioned dataset, and whether the two
tables are equal row for row (sorted the same way).
"""

import hashlib
import json
import os
import sys

import pyarrow.dataset as ds
import pyarrow.fs as pafs

endpoint, root, local = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
s3 = pafs.S3FileSystem(
    access_key=os.environ["AWS_ACCESS_KEY_ID"],
    secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    endpoint_override=endpoint,
    scheme="http",
    region="us-east-1",
)
disk = pafs.LocalFileSystem()


def objects(fs, base):
    """Every file under base: its key relative to base -> SHA-256."""
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                out[info.path[len(base) + 1 :]] = hashlib.sha256(f.read()).hexdigest()
    return out


def table(fs, base):
    if fs.get_file_info(base + "/futures/um/minute").type == pafs.FileType.NotFound:
        return None
    dataset = ds.dataset(
        base + "/futures/um/minute", filesystem=fs, format="parquet", partitioning="hive"
    )
    t = dataset.to_table()
    return t.sort_by([("symbol", "ascending"), (t.column_names[0], "ascending")])


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
