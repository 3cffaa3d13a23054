"""What the HTTP app and every router it mounts share: the one error shape, the app's database
URL (:mod:`hotcrm.web.responses`) and the strict JSON body reader (:mod:`hotcrm.web.jsonbody`).

It imports no capability. The app (:mod:`hotcrm.api.app`) imports the routers (webhook receiver,
REST API, quote pages, HotCRM pages) and the routers import this package, never the app or
each other's package, so the import graph has no cycle.
"""
