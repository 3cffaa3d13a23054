"""Airflow adapters: hooks that turn connections into plain settings, and thin operators.

This is the only ``hotcrm`` package that imports Airflow. DAG files import from here.
"""
