"""Fixtures shared by the cluster tests: the standalone master and worker on 127.0.0.1, the
packed executor environment and the demo job config (defined in test_cluster.py)."""

from tests.cluster.test_cluster import executor_env, job_config, standalone_master

__all__ = ["executor_env", "job_config", "standalone_master"]
