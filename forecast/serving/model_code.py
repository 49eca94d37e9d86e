"""Models-from-code entry for MLflow: the pyfunc is rebuilt from this file, never unpickled."""

from mlflow.models import set_model

from forecast.serving.pyfunc import ForecastModel

set_model(ForecastModel())
