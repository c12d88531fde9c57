"""The two Airflow DAGs that keep a Binance Minute Lake (docs/operations.md, "Under
Airflow"), both calling the bml CLI:

- bml_minute_incremental: one `bml run-once` a minute, the lake complete up to the last
  closed minute. A run that overlaps the next minute makes it wait (max_active_runs=1);
  a failed fetch fails the task (exit 1) and the next run fetches it again, so there is
  no retry.
- bml_historical_backfill: every hour, part of the history repaired with `bml
  backfill-years`, bounded by --max-missing-hours (the newest missing hours first, the
  rest left for the next run), then each symbol's watermark printed. The years and the
  bound are DAG params, so a manual run may change them ("Trigger DAG w/ config").

Settings come from the worker's environment, as for any bml command: BML_CONFIG (a
bml.toml with symbols, data_dir, base URLs, ...) or the BML_* variables; BML_BIN names
the binary (default: bml on PATH). A data dir has one writer at a time, so every task
runs in the Airflow pool "bml" of one slot (`airflow pools set bml 1 "one bml
writer"`), the minute task first; the bound keeps a backfill run short.
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
    dag_id="bml_minute_incremental",
    description="bml run-once every minute: the lake complete up to the last closed minute",
    schedule="* * * * *",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args={"retries": 0},
    tags=["bml"],
):
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
):
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
