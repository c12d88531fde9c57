"""bml_minute_incremental: keeps the Binance Minute Lake current, one `bml run-once`
a minute (docs/operations.md, "Under Airflow").

Settings come from the worker's environment, as for any bml command: BML_CONFIG
(a bml.toml holding symbols, data_dir, base URLs, ...) or the BML_* variables; BML_BIN
names the binary (default: bml on PATH). A run that overlaps the next minute makes it
wait (max_active_runs=1), and a failed fetch fails the task (exit 1): the next run
fetches it again, so there is no retry.

A data dir has one writer at a time, so both bml DAGs run their tasks in the Airflow
pool "bml" of one slot (`airflow pools set bml 1 "one bml writer"`), this DAG's first.
"""

import os
from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

BML = os.environ.get("BML_BIN", "bml")

with DAG(
    dag_id="bml_minute_incremental",
    description="bml run-once every minute: the lake complete up to the last closed minute",
    schedule="* * * * *",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args={"retries": 0},
    tags=["bml"],
) as dag:
    BashOperator(
        task_id="run_once",
        # --lookback-days 2: a minute's run looks at yesterday and today; older
        # holes are bml_historical_backfill's.
        bash_command=f"{BML} --quiet run-once --lookback-days 2",
        append_env=True,
        execution_timeout=timedelta(minutes=30),
        pool="bml",
        priority_weight=10,
    )
