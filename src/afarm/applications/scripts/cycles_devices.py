# SPDX-License-Identifier: MIT
"""Print Blender's version and the devices Cycles can render on, as one JSON line.

Run inside Blender: ``blender -b -Y --factory-startup --python cycles_devices.py``. The
slave's acceptance test reads the line that starts with PREFIX; nothing else is printed.
"""

import json

import bpy

PREFIX = "afarm-cycles-devices: "
BACKENDS = ("CUDA", "OPTIX", "HIP", "ONEAPI", "METAL")


def devices() -> list[dict[str, str]]:
    prefs = bpy.context.preferences.addons["cycles"].preferences
    found: dict[tuple[str, str], dict[str, str]] = {}
    for backend in BACKENDS:
        try:
            prefs.compute_device_type = backend
        except TypeError:  # this build has no such backend
            continue
        refresh = getattr(prefs, "refresh_devices", None) or prefs.get_devices
        refresh()
        for d in prefs.devices:
            found.setdefault((d.type, d.id), {"type": d.type, "name": d.name})
    if not any(d["type"] == "CPU" for d in found.values()):
        found[("CPU", "CPU")] = {"type": "CPU", "name": "CPU"}
    return sorted(found.values(), key=lambda d: (d["type"] != "CPU", d["type"], d["name"]))


print(PREFIX + json.dumps({"version": bpy.app.version_string, "devices": devices()}),
      flush=True)
