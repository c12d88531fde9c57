"""bml_historical_backfill: every hour, repairs part of the lake's history with `bml
backfill-years`, bounded by --max-missing-hours (the newest missing hours first, the
rest left for the next run), then prints each symbol's watermark (docs/operations.md,
"Under Airflow").

A data dir has one writer at a time: the task runs in the Airflow pool "bml" of one
slot, shared with bml_minute_incremental, whose runs go first; the bound keeps each
run short enough that the minute runs are not held up for long.

Settings come from the worker's environment (BML_CONFIG or the BML_* variables; BML_BIN
names the binary). The years and the bound are DAG params, so a manual run may change
them ("Trigger DAG w/ config").
"""

import os
from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models.param import Param
    from airflow.operators.bash import BashOperator

BML = os.environ.get("BML_BIN", "bml")

with DAG(
    dag_id="bml_historical_backfill",
    description="bml backfill-years: every missing or incomplete hour of the history, repaired",
    schedule="@hourly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={
        "years": Param(5, type="integer", minimum=1, maximum=20),
        "max_missing_hours": Param(240, type="integer", minimum=1),
    },
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["bml"],
) as dag:
    backfill = BashOperator(
        task_id="backfill_years",
        bash_command=(
            f"{BML} --quiet backfill-years --years {{{{ params.years }}}}"
            " --max-missing-hours {{ params.max_missing_hours }}"
        ),
        append_env=True,
        execution_timeout=timedelta(hours=2),
        pool="bml",
        priority_weight=1,
    )
    watermark = BashOperator(
        task_id="show_watermark",
        bash_command=f"{BML} show-watermark",
        append_env=True,
        pool="bml",
    )
    backfill >> watermark
