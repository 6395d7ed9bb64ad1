"""Fault diagnosis: the health of every sensor series and actuator, from what the agent sees.

Pure detectors (:mod:`.detectors`) turn a window of readings into findings; a
:class:`~.series.SeriesMonitor` keeps one series' window and history; an
:class:`~.actuators.ActuatorMonitor` watches commands against states and the room; a
:class:`~.verdict.Tracker` turns findings into a state (ok / suspect / faulty) with a since.
Clocks are passed in, so every test is exact.
"""
