"""Airflow integration for lgpd-tasks: guarded SQL operators, approval sensors, masking XCom."""
