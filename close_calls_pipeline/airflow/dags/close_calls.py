from close_calls_pipeline.airflow import build_dag

dag = build_dag()
