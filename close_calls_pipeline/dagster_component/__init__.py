"""Dagster: the assets, checks, resources and jobs of the Close calls pipeline."""
