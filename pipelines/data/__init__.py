"""Data sources (synthetic, CSV/Parquet files, MovieLens folders, SQL) and the ingest step.

Entry point: :func:`pipelines.data.ingest.run_ingest`. Nothing heavy is imported here.
"""
