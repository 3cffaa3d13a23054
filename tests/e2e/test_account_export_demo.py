"""The demo step writes an export in each format and says where."""

from pathlib import Path

from hotcrm.airflow.demo import DemoContext
from hotcrm.crm import seed
from hotcrm.exports import demo
from tests.conftest import DAGS_FOLDER


def test_demo_step_writes_each_format(airflow_db, hotcrm_env):
    seed.load_seed(hotcrm_env["database_url"])
    ctx = DemoContext(hotcrm_env["database_url"], hotcrm_env["bucket_url"], Path(hotcrm_env["bucket_dir"]), DAGS_FOLDER)
    lines = demo.run(ctx)
    assert [line.split(":")[0] for line in lines] == ["json", "ndjson", "csv"]
    folder = hotcrm_env["bucket_dir"] / "exports" / "accounts"
    for line, ext in zip(lines, ["json", "ndjson", "csv"], strict=True):
        url = line.split(" -> ")[1].split(" ")[0]
        assert url.endswith("." + ext)
        assert (folder / url.rsplit("/", 1)[1]).stat().st_size > 0
