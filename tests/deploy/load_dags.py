"""Loads the DAG folder given as argv[1] in a real Airflow (a DagBag, as the
scheduler's DAG processor does) and prints, as JSON, its import errors and each
DAG's schedule, settings and tasks, with their commands rendered with the DAG's
default params. Run by tests/deploy.rs."""

import json
import sys

import jinja2

try:  # Airflow 3
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2
    from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    params = dag.params.dump()
    out["dags"][dag_id] = {
        "schedule": str(dag.schedule),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tasks": {
            t.task_id: {
                "command": jinja2.Template(t.bash_command).render(params=params),
                "downstream": sorted(t.downstream_task_ids),
                "pool": t.pool,
            }
            for t in dag.tasks
        },
    }
print(json.dumps(out))
