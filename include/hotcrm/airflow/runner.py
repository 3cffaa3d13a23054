"""Run a DAG once in-process (``dag.test()``) and collect what its tasks returned.

Used by ``make demo`` and the end-to-end tests; needs an initialised Airflow metadata DB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DagResult:
    """What one DAG run did: its state and each task's return value (a list for mapped tasks)."""

    dag_id: str
    run_id: str
    state: str
    returns: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        """True when the run ended in success."""
        return self.state == "success"


def run_dag(dag_id: str, dags_folder: str | Path, conf: dict[str, Any] | None = None, **test_kwargs: Any) -> DagResult:
    """Parse ``dags_folder``, run ``dag_id`` with ``conf`` and return its result."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    bag = DagBag(dag_folder=str(dags_folder))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise LookupError(f"no DAG {dag_id!r} in {dags_folder}")
    run = dag.test(run_conf=conf or {}, **test_kwargs)
    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.map_index, XComModel.value).where(
                XComModel.dag_id == dag_id, XComModel.run_id == run.run_id, XComModel.key == "return_value"
            )
        ).all()
    returns: dict[str, Any] = {}
    for task_id, map_index, value in sorted(rows, key=lambda r: (r[0], r[1] if r[1] is not None else -1)):
        if map_index is not None and map_index >= 0:
            returns.setdefault(task_id, []).append(value)
        else:
            returns[task_id] = value
    state = getattr(run.state, "value", run.state)
    return DagResult(dag_id=dag_id, run_id=run.run_id, state=str(state), returns=returns)
