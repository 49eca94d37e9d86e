"""Entry points: thin Hydra shims, one per scheduled job."""

import os

# scheduled jobs write logs, not terminals: no per-file download bars from MLflow
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
