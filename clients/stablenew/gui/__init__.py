"""The StableNew desktop window (`stablenew gui`): a thin Tk client of the four services.

Every fact it shows comes from the services through the SDK (`stablenew.sdk`), live: the queue
from its watch stream, the history from its own. The logic of each panel lives in a view model
without Tk (`*_model.py`), which the widgets (`*_view.py`) only bind; every service call runs on
a background event loop (`backend.py`) and every change of a view model happens on the Tk thread.
See docs/GUI.md.
"""
