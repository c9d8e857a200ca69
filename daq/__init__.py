"""The DAQ layer: the trigger menu, the ZeroMQ pipeline that runs it, and the command line.

- :mod:`darktrigger.daq.trigger`: seeds, menus, decisions and the rates they give;
- :mod:`darktrigger.daq.topology`: one YAML file naming every stage's endpoints and settings;
- :mod:`darktrigger.daq.stages`: source, scorer, trigger and recorder as plain classes, fed
  batches in-process; :mod:`darktrigger.daq.runner` owns their sockets and loops,
  :mod:`darktrigger.daq.wire` their messages, :mod:`darktrigger.daq.security` CURVE;
- :mod:`darktrigger.daq.launch` (one stage in this process), :mod:`darktrigger.daq.local`
  (every stage in threads), :mod:`darktrigger.daq.supervisor` (every stage a process:
  ``darktrigger run``);
- :mod:`darktrigger.daq.summary`: the run summary, ``run_summary.json``;
- :mod:`darktrigger.daq.testing`: ports, a small set-up and the offline answer for tests;
- :mod:`darktrigger.daq.cli`: the ``darktrigger`` command, one module per command family.

    >>> from darktrigger.daq.stages import TriggerStage
    >>> from darktrigger.daq.trigger import Menu
    >>> from darktrigger.replay.testing import random_batch
    >>> menu = Menu.from_dict({"seeds": [{"name": "MET90", "type": "met", "met_min": 90}]})
    >>> accepted, decision = TriggerStage(menu).process(random_batch(1000, seed=1))
    >>> len(decision), len(accepted) == int(decision.accepted.sum())
    (1000, True)
"""
