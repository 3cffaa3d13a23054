"""The HotCRM pages of the Airflow UI (server-rendered, no asset from a CDN).

:mod:`hotcrm.ui.views` reads and acts through the same core functions as the CLI;
:mod:`hotcrm.ui.routes` renders them under ``/hotcrm/ui``; who may see and act is decided by
a :class:`hotcrm.ui.auth.UiBackend` the host sets on the app (the Airflow plugin sets one that
asks Airflow's auth manager; without one every page answers 403).
"""
