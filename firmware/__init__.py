"""The firmware layer: quantised models into hls4ml HLS and da4ml RTL, checked bit for bit.

- :mod:`~darktrigger.firmware.project`: ``darktrigger firmware build``, a model directory
  into a project folder; :mod:`~darktrigger.firmware.manifest`, the project's typed record;
- :mod:`~darktrigger.firmware.hls` and :mod:`~darktrigger.firmware.testbench`: the hls4ml
  project with exact precisions, its C simulation and its own testbench;
- :mod:`~darktrigger.firmware.rtl`: da4ml's Verilog, compiled and run under Verilator;
- :mod:`~darktrigger.firmware.verify`: ``darktrigger firmware verify``, every implementation
  on the same events;
- :mod:`~darktrigger.firmware.backend`: the ``firmware`` scoring backend;
- :mod:`~darktrigger.firmware.emulator`: CMSSW's hls4mlEmulator plugins (AXOL1TL): imported
  (``darktrigger firmware import --emulator``, the ``emulator`` backend) and exported
  (``firmware build --emulator``); :mod:`~darktrigger.firmware.testing` writes one of
  AXOL1TL v1's shape;
- :mod:`~darktrigger.firmware.vendor`: vendor synthesis, where a vendor tool is installed.

    >>> from darktrigger.models.backends import BACKENDS
    >>> "firmware" in BACKENDS, "emulator" in BACKENDS
    (True, True)
"""
